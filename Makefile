# The two commands a newcomer needs: `make plan` and `make test`. Each sets up
# what it needs on first use, as any user: venv/ from PyPI and, for the tests,
# the judges that are not on PyPI (scripts/judges.sh). Nothing is installed on
# the system. `make test PYTHON=python3.10` tests with that interpreter.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= venv
PY := $(VENV)/bin/python
FILE ?= runners.yaml

.PHONY: plan plan-json validate test lint typecheck unit judges check-python bench up destroy preview clean help

# A PYTHON given on the command line (or in the environment) must be the venv's.
ifneq ($(filter command line environment,$(origin PYTHON)),)
CHECK_PYTHON := check-python
endif

help:
	@echo "make plan      offline plan of $(FILE) (no cloud, no Pulumi CLI)"
	@echo "make test      lint, type check and all tests"
	@echo "make validate  check $(FILE) like pre-commit does"
	@echo "make bench     benchmarks -> bench/results.md"
	@echo "make up        pulumi up (needs the Pulumi CLI and cloud credentials)"
	@echo "make destroy   pulumi destroy"

# "3.11.2 in /usr": which interpreter a python is (a venv reports its base's prefix).
WHICH_PYTHON := import sys; print(".".join(map(str, sys.version_info[:3])), "in", sys.base_prefix)
check-python:
	@want=$$($(PYTHON) -c '$(WHICH_PYTHON)') || exit 1; \
	have=$$($(PY) -c '$(WHICH_PYTHON)' 2>/dev/null) || exit 0; \
	[ "$$want" = "$$have" ] || { echo "$(VENV)/ holds Python $$have, not PYTHON=$(PYTHON) (Python $$want):" \
	  "run make clean, or pass VENV=another-dir" >&2; exit 1; }

$(VENV)/.program: requirements.txt | $(CHECK_PYTHON)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "gh-runners needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
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

# cloud-init's Debian package unpacked into .cache/judges where apt exists (no root).
judges:
	@bash scripts/judges.sh cloud-init

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

unit: $(VENV)/.dev judges
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
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
