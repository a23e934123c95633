# callwhisper developer commands. Every target bootstraps what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test lint typecheck bench fuzz system-deps clean help

help:
	@echo "make run    - install what is missing and start the server on embedded defaults"
	@echo "make test   - install what is missing and run lint, type check and every test"
	@echo "make lint   - ruff lint and format check"
	@echo "make bench  - run the benchmarks in bench/ and print their figures"
	@echo "make fuzz   - the long fuzz run of the SIP parser and transaction layer"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

system-deps:
	@scripts/install-system-deps.sh

run: $(STAMP) system-deps
	$(BIN)/callwhisper serve --config examples/auto-insurance.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

# FUZZ_EXAMPLES inputs per fuzz test (about 10 minutes for 20000 on one core).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	CALLWHISPER_HYPOTHESIS_PROFILE=fuzz CALLWHISPER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		$(BIN)/pytest --hypothesis-show-statistics tests/unit/sip/test_fuzz.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
