# The targets a user and CI call. `make test` runs the whole suite on a fresh machine.
.PHONY: build test test-quick kube-assets fuzz bench lint

build:
	go build -o bin/stepflow ./cmd/stepflow

## test: everything CI runs: install what is missing, vet, format check, tests, short fuzzing.
test:
	./scripts/test.sh

## test-quick: the Go tests that need no test servers (-short skips those starting kube-apiserver,
## Prometheus and the like).
test-quick:
	go test -short -count=1 ./...

## kube-assets: etcd and kube-apiserver for the Kubernetes tests (built once, cached).
kube-assets:
	./scripts/kube-assets.sh

fuzz:
	FUZZTIME=60s ./scripts/fuzz.sh

## bench: the benchmarks recorded in docs/performance.md.
bench:
	go test -run '^$$' -bench . -benchmem ./step/ ./store/sqlite/
	go test -run '^$$' -bench . -benchtime 1x -timeout 20m ./bench/
