# The two commands a newcomer needs: `make plan` and `make test`. Each sets up
# what it needs on first use (venv/, and for tests a few Debian packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
FILE ?= runners.yaml

.PHONY: plan plan-json validate test lint typecheck unit system-deps bench up destroy preview clean help

help:
	@echo "make plan      offline plan of $(FILE) (no cloud, no Pulumi CLI)"
	@echo "make test      lint, type check and all tests"
	@echo "make validate  check $(FILE) like pre-commit does"
	@echo "make bench     benchmarks -> bench/results.md"
	@echo "make up        pulumi up (needs the Pulumi CLI and cloud credentials)"
	@echo "make destroy   pulumi destroy"

$(VENV)/.program: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.program
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

plan: $(VENV)/.program
	$(PY) -m plan $(FILE)

plan-json: $(VENV)/.program
	$(PY) -m plan $(FILE) --json

validate: $(VENV)/.program
	$(PY) -m schema validate $(FILE)

system-deps:
	@bash scripts/system-deps.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

unit: $(VENV)/.dev system-deps
	$(PY) -m pytest

test: lint typecheck unit

bench: $(VENV)/.dev
	$(PY) -m bench

up preview destroy: $(VENV)/.program
	@command -v pulumi >/dev/null || { \
	  echo "The Pulumi CLI is not installed. Install it (https://www.pulumi.com/docs/install/):"; \
	  echo "  curl -fsSL https://get.pulumi.com | sh    # or: brew install pulumi/tap/pulumi"; \
	  echo "then: pulumi login --local && pulumi stack init dev  (see README.md)"; \
	  exit 1; }
	pulumi $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
