# koji-adjutant: every entry point (README, CI, pre-commit) goes through this Makefile.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BUILD_DIR ?= $(CURDIR)/build
IMAGE ?= localhost/koji-adjutant-task:dev
PYTEST_ARGS ?=
export BUILD_DIR

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BUILD_DIR):
	@mkdir -p $@

.PHONY: host-deps
host-deps: ## Install missing host packages (podman, runc, catatonit, debootstrap, rpm, createrepo-c, dnf)
	@scripts/install-host-deps.sh

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	@# pyproject.toml's `test` and `dev` extras are the one list (scripts/requirements.py)
	$(VENV)/bin/pip install -q $$($(VENV)/bin/python scripts/requirements.py test dev --without koji)
	@# koji's requests-gssapi needs Kerberos headers to build and only serves GSSAPI logins,
	@# which nothing here uses: install the client library without it.
	$(VENV)/bin/pip install -q --no-deps $$($(VENV)/bin/python scripts/requirements.py test --only koji)
	@touch $@

.PHONY: venv
venv: $(VENV)/.ready ## Create the virtualenv with the build and test dependencies

.PHONY: develop
develop: venv ## Build the extension (release) into the virtualenv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/maturin develop --release --quiet

# glibc 2.34 and newer: EL9, Fedora 35+, Debian 12, Ubuntu 22.04 (docs/deploy.md); older
# glibc: WHEEL_COMPAT=manylinux_2_28 WHEEL_ARGS=--zig (pip install ziglang into the venv)
WHEEL_COMPAT ?= manylinux_2_34
WHEEL_ARGS ?=
DIST ?= dist

.PHONY: wheel
wheel: venv ## Build the release wheel (abi3; manylinux_2_34, else linux) into dist/
	@mkdir -p $(DIST)
	$(VENV)/bin/maturin build --release --quiet --out $(DIST) --compatibility $(WHEEL_COMPAT) $(WHEEL_ARGS) \
	  || { echo "make wheel: $(WHEEL_COMPAT) is not possible with this toolchain; building a" \
	         "linux-tagged wheel (for this host's glibc or newer, see docs/deploy.md)" >&2; \
	       $(VENV)/bin/maturin build --release --quiet --out $(DIST) --compatibility linux; }

.PHONY: image
image: host-deps | $(BUILD_DIR) ## Build the dev task image (reused when present)
	@IMAGE=$(IMAGE) scripts/build-task-image.sh

.PHONY: test
test: host-deps develop image ## Install what is missing, then run all tests (cargo + pytest, real podman)
	@scripts/run-tests.sh $(PYTEST_ARGS)

.PHONY: demo
demo: host-deps develop image ## Build the bundled sample SRPM in a container and make a repo of it
	@scripts/podman-service.sh start
	@trap 'scripts/podman-service.sh stop' EXIT; \
	  KOJI_ADJUTANT_PODMAN_SOCKET=$(BUILD_DIR)/podman.sock $(VENV)/bin/python -m koji_adjutant.demo --image $(IMAGE) --work-dir $(BUILD_DIR)/demo

.PHONY: bench
bench: host-deps develop image ## Run the benchmarks (ratios measured side by side)
	@scripts/podman-service.sh start
	@trap 'scripts/podman-service.sh stop' EXIT; \
	  KOJI_ADJUTANT_PODMAN_SOCKET=$(BUILD_DIR)/podman.sock PYTHONPATH=tests $(VENV)/bin/python -m benchmarks $(BENCH_ARGS)

SOAK_ARGS ?=
.PHONY: soak
soak: host-deps develop image ## The soak: 500 short tasks with a fault every 25, then what they left (SOAK_ARGS="--tasks N")
	@scripts/podman-service.sh start
	@trap 'scripts/podman-service.sh stop' EXIT; \
	  KOJI_ADJUTANT_PODMAN_SOCKET=$(BUILD_DIR)/podman.sock PYTHONPATH=tests $(VENV)/bin/python -m benchmarks.soak $(SOAK_ARGS)

.PHONY: e2e
e2e: host-deps develop image upstream-tests ## End-to-end against a real hub + kojid from KOJI_SRC (plugin and patch)
	@test -n "$(KOJI_SRC)" || { echo "usage: make e2e KOJI_SRC=<koji checkout>"; exit 2; }
	@KOJI_SRC=$(KOJI_SRC) IMAGE=$(IMAGE) VENV=$(VENV) scripts/e2e/run.sh

.PHONY: upstream-tests
upstream-tests: develop ## koji's tests/test_builder on the patched kojid, without and with the wheel (KOJI_SRC=...)
	@test -n "$(KOJI_SRC)" || { echo "usage: make upstream-tests KOJI_SRC=<koji checkout>"; exit 2; }
	@KOJI_SRC=$(KOJI_SRC) VENV=$(VENV) BUILD_DIR=$(BUILD_DIR) scripts/upstream-tests.sh

.PHONY: lint
lint: venv ## cargo fmt/clippy, ruff, and stubtest for the hand-written stub
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests kojid_patch benchmarks
	$(VENV)/bin/ruff format --check python tests kojid_patch benchmarks
	$(VENV)/bin/python -m mypy.stubtest koji_adjutant._core --allowlist stubtest-allowlist.txt

.PHONY: clean
clean: ## Remove build outputs (not the task image)
	rm -rf target $(BUILD_DIR) python/koji_adjutant/*.so
