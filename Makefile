# jitrbac — run `make help` for the targets.
#
# Everything builds from this repository's own files: the Rust toolchain builds the
# operator; Go builds the local control plane (etcd, kube-apiserver,
# kube-controller-manager, kubectl) and helm from the module proxy into
# $(JITRBAC_CACHE_DIR) (default ~/.cache/jitrbac), once per pinned version.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CLUSTER_DIR ?= .cluster

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## Start a local control plane, run the operator, and watch a 20-second grant live and expire
	@bash hack/demo.sh

.PHONY: test
test: fmt-check lint ## Everything: format check, clippy, unit and integration tests (real control plane)
	$(CARGO) test --all-targets --locked

.PHONY: unit
unit: ## Unit tests and the Argo CD health check test (no control plane)
	$(CARGO) test --lib --bins --test argocd --locked

.PHONY: e2e
e2e: ## Integration tests only (each test binary starts its own control plane)
	$(CARGO) test --test e2e --test resilience --test install --locked

.PHONY: bench
bench: ## Benchmarks, each on a fresh local control plane, operator in release mode (about 20 min); report in target/bench/
	$(CARGO) bench --locked --bench scenarios

.PHONY: bench-quick
bench-quick: ## The benchmarks with smaller counts (a few minutes); report in target/bench/
	$(CARGO) bench --locked --bench scenarios -- --quick

.PHONY: fmt-check
fmt-check: ## Check formatting
	$(CARGO) fmt --all --check

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## Clippy with warnings as errors
	$(CARGO) clippy --all-targets --locked -- -D warnings

.PHONY: build
build: ## Build the operator (release)
	$(CARGO) build --release --locked

.PHONY: crds
crds: ## Regenerate crds/ and the chart's CRDs from the Rust types, then deploy/
	$(CARGO) run --quiet --locked -- crds --dir crds
	$(CARGO) run --quiet --locked -- crds --dir charts/jitrbac/files/crds
	bash hack/render-deploy.sh

.PHONY: deploy
deploy: ## Regenerate deploy/jitrbac.yaml from the Helm chart (default values)
	bash hack/render-deploy.sh

.PHONY: image
image: ## Build the container image (needs docker with BuildKit; not available on every machine)
	docker build -t ghcr.io/jitrbac/jitrbac:dev --build-arg REVISION="$$(git rev-parse HEAD)" .

.PHONY: controlplane
controlplane: ## Build (or reuse) the control-plane binaries and helm; prints their directory
	@bash tests/controlplane/build.sh

.PHONY: cluster-up
cluster-up: ## Start a local control plane; admin kubeconfig in .cluster/kubeconfig
	$(CARGO) run --quiet --locked --example cluster -- up --dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## Stop the local control plane started by cluster-up
	$(CARGO) run --quiet --locked --example cluster -- down --dir $(CLUSTER_DIR)

.PHONY: clean
clean: cluster-down ## Stop the control plane and remove build output
	$(CARGO) clean
	rm -rf $(CLUSTER_DIR)
