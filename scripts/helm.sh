#!/usr/bin/env bash
# helm.sh: builds helm from its Go module at a pinned version into the cache
# (~/.cache/stepflow/helm-<version>/helm), once; the chart's tests (charts/chart_test.go) run it.
# Not a dependency of the main module: `go install pkg@version` builds it with helm's own go.mod.
set -euo pipefail
version=v3.22.1
dir=${STEPFLOW_HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stepflow/helm-$version}
if [ -x "$dir/helm" ]; then
  exit 0
fi
echo "building helm $version into $dir"
mkdir -p "$dir"
GOBIN="$dir" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v3/cmd/helm@$version"
"$dir/helm" version --short
