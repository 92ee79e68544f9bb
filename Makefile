# The targets a user and CI call. `make test` runs the whole suite on a fresh machine.
.PHONY: build test test-quick kube-assets generate fuzz bench lint

build:
	go build -o bin/stepflow ./cmd/stepflow

## test: everything CI runs: install what is missing, vet, format check, lint, tests, short fuzzing.
test:
	./scripts/test.sh

## lint: golangci-lint (pinned in scripts/lint.sh) with .golangci.yml; `make test` runs it too.
lint:
	./scripts/lint.sh

## test-quick: the Go tests that need no test servers (-short skips those starting kube-apiserver,
## Prometheus and the like).
test-quick:
	go test -short -count=1 ./...

## generate: deepcopy and CRDs from the api types, and docs/step-types.md from the definitions.
CONTROLLER_GEN = go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
generate:
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=config/crd
	go generate ./definitions

## kube-assets: etcd and kube-apiserver for the Kubernetes tests (built once, cached).
kube-assets:
	./scripts/kube-assets.sh

fuzz:
	FUZZTIME=60s ./scripts/fuzz.sh

## bench: issue 7's benchmarks (CUE per step, embedded engine, wake-up, controller) in one table
## beside their targets; see docs/performance.md. `make bench BENCHFLAGS=-quick` for a short run,
## BENCHFLAGS=-only=cue,embedded for some sections.
BENCHFLAGS ?=
bench:
	go run ./bench/table $(BENCHFLAGS)
