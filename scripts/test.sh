#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then checks formatting,
# vets, lints, runs every test, and fuzzes each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go $(go version | awk '{print $3}')"
go mod download

echo "== test servers"
# Debian packages the tests start as real servers, installed when missing.
need=()
# Prometheus and promtool: the dashboard's queries and the alert rules (deploy/deploy_test.go).
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
# systemd-analyze checks the server's unit (deploy/systemd); docs/operations.md's commands use curl.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
# store/postgres runs initdb and postgres from /usr/lib/postgresql/<major>/bin (store/postgres/pgtest).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
# The dashboard's tests drive a real headless Chromium (web/dashboard_test.go).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The live tree of `stepflow run` is tested in a real terminal (cmd/stepflow/terminal_test.go).
command -v tmux >/dev/null || need+=(tmux)
# The step type run's local sandbox is bubblewrap under prlimit (provider/run, cmd/stepflow's run-local).
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v prlimit >/dev/null || need+=(util-linux)
# The example external providers are started for real (examples/providers, cmd/stepflow's providers script).
command -v javac >/dev/null || need+=(default-jdk-headless)
command -v python3 >/dev/null || need+=(python3)
# The events' NATS sink publishes to a real NATS server (events/events_test.go).
command -v nats-server >/dev/null || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# etcd and a kube-apiserver built from the published Kubernetes modules (cached after the first run).
./scripts/kube-assets.sh
# helm for the chart's tests, built from its module (cached after the first run).
./scripts/helm.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== golangci-lint"
./scripts/lint.sh

echo "== go test"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz (short)"
FUZZTIME=${FUZZTIME:-10s} ./scripts/fuzz.sh
