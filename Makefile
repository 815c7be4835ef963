# zt: the two commands are `make demo` (the lab's main job) and `make test` (everything CI runs).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test deps venv native native-cpp native-java lint test-python test-cpp test-java fuzz bench clean images demo-containers

## demo: install what is missing, build, run every milestone the lab defines (zt.lab.milestones:
## now Milestones 1 to 5), the chaos runs (docs/chaos.md: chaos, kills) and the replica run on
## PostgreSQL (docs/scaling.md: replicas) on local processes, one lab at a time, print the
## verdicts and write reports/latest; then say where the logs and metrics are
demo: deps venv native
	@rc=0; $(BIN)/zt-lab run --milestone all,chaos,kills,replicas || rc=$$?; \
	echo "[demo] logs and metrics: reports/latest/report.html (verdicts; Milestone 4's plots from Prometheus and"; \
	echo "[demo]   its PromQL answers), reports/latest/logs/<scenario>/ (every component's JSON log lines);"; \
	echo "[demo]   ./demo.sh observe for a readable tail of the events, ./demo.sh observe --keep for the Prometheus UI"; \
	exit $$rc

## test: everything CI runs (scripts/make-test.sh, a timing line per step): lint, the C++ and Java
## suites, a container engine and the images where it can (root, or an engine that answers) side by
## side (per-step logs in build/test-results/logs/), the Python suite (tests/), then `zt-lab run
## --milestone all,chaos,kills,replicas` on processes (reports/latest) and on containers
## (reports/docker/latest);
## without containers, its last line says what it left out
test: deps venv native
	./scripts/make-test.sh

deps:
	./scripts/install-deps.sh

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

native: native-cpp native-java
native-cpp:
	./native/cpp/build.sh
native-java:
	./native/java/build.sh

lint: venv
	$(BIN)/ruff check zt tests scenarios bench load conftest.py
	$(BIN)/ruff format --check zt tests scenarios bench load conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	./scripts/lint-native.sh

# The native suites make their test PKI with native/testpki/make_test_pki.py: use the venv's Python.
test-cpp: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" ./native/cpp/test.sh
## fuzz: the C++ libFuzzer targets, FUZZ_SECONDS each (default 30; docs/testing.md)
FUZZ_SECONDS ?= 30
fuzz:
	./native/cpp/fuzz.sh $(FUZZ_SECONDS)
test-java: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" ZT_PYTHON="$(CURDIR)/$(BIN)/python" ./native/java/test.sh
# Jazzer fuzzing of service-b's parsers, FUZZ_SECONDS per target (docs/testing.md "Java fuzz targets").
.PHONY: fuzz-java
FUZZ_SECONDS ?= 30
fuzz-java:
	./native/java/fuzz.sh $(FUZZ_SECONDS)
# tests/ only: the milestone scenarios run through `zt-lab run` (the last steps of `make test`).
# In parallel (pytest-xdist): 2 workers, as many as a CI machine has cores; every test has its own
# ports and directories; a module's tests share one worker (--dist loadfile), so a module-scoped
# fixture (a service pair, a container lab) starts once (docs/ci.md).
PYTEST_WORKERS ?= 2
test-python: venv
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15 --junitxml=build/test-results/python.xml

## images: a container engine (started if missing, as root) and the component images
images: venv native
	./scripts/docker-engine.sh start
	./scripts/build-images.sh

## demo-containers: the seed's exit check with docker-compose
demo-containers: images
	./demo.sh mvp --compose

## bench: the C++ Release suite first (make test runs the sanitizer build only: native/cpp/test.sh,
## docs/ci.md), then RA issuance; its cost per certificate on SQLite and PostgreSQL (1 and 2
## replicas, docs/scaling.md); rotation under load (Milestone 2's lab: pickup delay per stack,
## p99 around rotations); the cost of the native services' CRL checks (native/*/bench.sh); their
## handshakes per CPU-second against openssl s_server and a bare JSSE server (bench/handshakes.py)
bench: venv native
	PATH="$(CURDIR)/$(BIN):$$PATH" ./native/cpp/test.sh release
	$(BIN)/python -m bench.vs_stepca
	$(BIN)/python -m bench.ra_issue
	$(BIN)/python -m bench.store_issue
	$(BIN)/python -m bench.rotation
	./native/cpp/bench.sh
	./native/java/bench.sh
	$(BIN)/python -m bench.handshakes

## bench-handshakes: service-a vs openssl s_server, service-b vs bare JSSE only (docs/performance.md)
.PHONY: bench-handshakes
bench-handshakes: venv native
	$(BIN)/python -m bench.handshakes

## bench-ra: zt-ra against step-ca v0.30.2 only (bench/vs_stepca.py; builds step-ca into .tools/ once)
.PHONY: bench-ra
bench-ra: venv
	$(BIN)/python -m bench.vs_stepca

clean:
	rm -rf build native/cpp/build* native/java/target .lab
