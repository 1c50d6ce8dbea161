# Vigil — the two commands are `make dev` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Three workers on two cores: a fifth of the suite's time is tests waiting on a clock (a check's planned start, a
# subprocess's stack), which a third worker fills (make test: 7 min 26 s at two workers, ~6 min 50 s at three).
PYTEST_WORKERS ?= 3

.PHONY: dev demo test lint format typecheck bench package deploy-check infra redrive seal clean browser
CHROMIUM := /usr/bin/chromium

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## make dev: run all of Vigil locally on the embedded AWS emulator (API on http://127.0.0.1:$${PORT:-8000})
dev: $(STAMP)
	$(BIN)/python -m chalicelib.local

## make demo: make dev plus a seeded, living demo (account, monitors of a bundled demo service, channels, a page)
demo: $(STAMP)
	$(BIN)/python -m chalicelib.local --demo

## make test: lint, then the whole suite
test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests/unit tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/bandit -c pyproject.toml --severity-level high --quiet -r chalicelib functions infra app.py
	$(BIN)/python -m infra.audit

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy chalicelib $(wildcard functions/*.py functions/*/*.py)

## The status page is checked in a real headless browser: Debian's Chromium (never a browser download).
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

## make bench: the benchmarks; the cost bench's machine-readable figures come last (out/bench-figures.txt)
BENCH_FIGURES ?= out/bench-figures.txt
bench: $(STAMP)
	@rm -f $(BENCH_FIGURES)
	BENCH_FIGURES=$(BENCH_FIGURES) $(BIN)/python -m pytest -p no:xdist -s tests/load; status=$$?; \
	  cat $(BENCH_FIGURES) 2>/dev/null; exit $$status

infra: $(STAMP)
	$(BIN)/python -m infra.build

package: $(STAMP)
	$(BIN)/python -m infra.package $(STAGE)

## make deploy-check STAGE=prod: package and lint, then deploy both stacks into an emulator to prove the wiring
deploy-check: $(STAMP)
	$(BIN)/python -m infra.deploy_check $(STAGE)

## make redrive STAGE=prod QUEUE=alerts|email-events|handler-failures|checks [ARGS=--dry-run]: parked work back to work
redrive: $(STAMP)
	$(BIN)/python -m infra.redrive $(STAGE) $(QUEUE) $(ARGS)

## make seal STAGE=prod [ARGS=--dry-run]: seal the secrets a stage stored before it sealed them (docs/deploy.md)
seal: $(STAMP)
	$(BIN)/python -m infra.seal $(STAGE) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache out test-artifacts
