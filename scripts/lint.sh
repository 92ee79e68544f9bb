#!/usr/bin/env bash
# lint.sh: runs golangci-lint with the checked-in .golangci.yml over the whole module.
# The linter is built from its pinned module version by `go run` (no prebuilt binary is
# downloaded); Go's build cache and golangci-lint's own cache make the runs after the first quick.
# Arguments are passed on (flags in --name=value form), e.g. `./scripts/lint.sh --fix` or `./scripts/lint.sh ./engine/...`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v2.15.0
# Without a package pattern among the arguments, the whole module.
pattern=false
for a in "$@"; do [[ "$a" == -* ]] || pattern=true; done
$pattern || set -- "$@" ./...
exec go run "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version" run "$@"
