#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then checks formatting,
# vets, runs every test, and fuzzes each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go $(go version | awk '{print $3}')"
go mod download

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz (short)"
FUZZTIME=${FUZZTIME:-10s} ./scripts/fuzz.sh
