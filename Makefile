# The targets a user and CI call. `make test` runs the whole suite on a fresh machine.
.PHONY: build test test-quick kube-assets generate fuzz bench lint image

# The version and commit stamped into the binary (`stepflow version`, stepflow_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED ?= $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
LDFLAGS  = -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	go build -ldflags "$(LDFLAGS)" -o bin/stepflow ./cmd/stepflow

## image: the container image as an OCI image layout in bin/image (no container daemon needed):
## a static binary, user 65532, labels with the version and commit. Push it with skopeo or crane.
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/stepflow-linux-amd64 ./cmd/stepflow
	rm -rf bin/image
	go run ./cmd/stepflow-image -binary bin/stepflow-linux-amd64 -out bin/image -version $(VERSION) -commit $(COMMIT) -created $(CREATED)

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

## generate: deepcopy and CRDs from the api types (config/crd and the chart's crds/), and docs/step-types.md from the definitions.
CONTROLLER_GEN = go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
generate:
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=config/crd
	cp config/crd/*.yaml charts/stepflow/crds/
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
