# The verbs people type. README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup models run test test-fast lint generate check-generated bench images models-image e2e e2e-up e2e-down e2e-kind clean

setup:                 ## venv with pinned deps + pinned tools in .tools/
	@bash ci/setup.sh

models: setup          ## build the example SavedModels into model_repo/models (idempotent)
	@$(PY) -m tfstack.model_repo.build

run: models            ## the local stack: model server + gateway on loopback, Ctrl-C stops it
	@$(PY) -m tfstack.cli up --with-prometheus

test: setup models     ## everything CI runs: generated-code check, lint, all test suites
	@bash ci/test.sh

test-fast: setup models
	@$(PY) -m pytest -m "not slow and not cluster" -q

lint: setup
	@bash ci/lint.sh

generate: setup        ## regenerate the protocol's gRPC/protobuf code from tfstack/protocol/proto/*.proto
	@bash tfstack/protocol/proto/generate.sh

check-generated: setup
	@bash tfstack/protocol/proto/generate.sh --check

bench: models
	@$(PY) -m bench.run_all

images: setup models   ## gateway + models images built here on a Debian base (root; no Docker needed): docker-archive files
	@bash ci/cluster/images.sh build gateway models
	@bash ci/cluster/images.sh list | awk '$$1 == "gateway" || $$1 == "models"'

models-image: setup    ## your models as a models image for the chart: make models-image MODELS=DIR TAG=REF (docker/podman)
	@[ -n "$(MODELS)" ] && [ -n "$(TAG)" ] || { echo "usage: make models-image MODELS=DIR TAG=REF" >&2; exit 2; }
	@$(PY) -m tfstack.cli image "$(MODELS)" --tag "$(TAG)"

e2e: setup models      ## real Kubernetes built here: cluster up, the e2e suite, teardown (ci/cluster/)
	@bash ci/cluster/e2e.sh $(ARGS)

e2e-up: setup models   ## bring the local cluster up and leave it running (ci/cluster/run.sh CMD to use it)
	@bash ci/cluster/e2e.sh --up-only

e2e-down:              ## tear the local cluster down and check nothing is left
	@bash ci/cluster/down.sh

e2e-kind:              ## needs Docker + kind: the full cluster run (see ci/kind/README.md)
	@bash ci/kind/e2e.sh

clean:
	rm -rf .run .pytest_cache .ruff_cache
