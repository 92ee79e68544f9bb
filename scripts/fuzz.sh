#!/usr/bin/env bash
# Runs every Fuzz target of the module for $FUZZTIME (default 10s) each.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-10s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "-- $pkg $f ($t)"
    # Go's fuzzing coordinator can end a short run with "context deadline exceeded" when a
    # worker is still executing an input as the time runs out, without any input failing
    # (no "Failing input written"); such a run is made once more. A failing input fails.
    if ! out=$(go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" 2>&1); then
      echo "$out"
      if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
        echo "-- $pkg $f: the run ran out of time without a failing input; once more"
        go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
      else
        exit 1
      fi
    else
      echo "$out" | tail -2
    fi
  done
done
