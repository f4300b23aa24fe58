# The targets the README, CI and people all call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SHARED ?= ../shared

.PHONY: install run test lint bench definitions clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: install and start the whole system on the embedded store with demo data
run: install
	$(BIN)/infirmary serve --demo

## make test: install what the tests need and run the whole suite
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check fhir_server profiles terminology hl7_adapters smart_apps tests bench scripts
	$(BIN)/mypy

## make bench: the benchmarks (not tests); each prints its figures
bench: install
	bash bench/run_all.sh

## make definitions: regenerate fhir_server/definitions from the official R4 package
definitions: install
	$(BIN)/python scripts/generate_definitions.py --package $(SHARED)/fhir/hl7.fhir.r4.core-4.0.1.tgz

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache
