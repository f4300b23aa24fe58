# The targets the README, CI and people all call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SHARED ?= ../shared

.PHONY: install run test lint bench definitions clean emulator redis

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: install and start the whole system on the embedded store with demo data
run: install
	$(BIN)/infirmary serve --demo

## make emulator: the MongoDB emulator the MongoDB backend's tests run against without FHIR_TEST_MONGODB_URL
## (mongo-java-server from Maven Central, built once into .venv/emulators; needs java and mvn). Outside CI a
## missing JDK is a warning (those tests then skip); with CI=true it is an error.
EMULATOR := $(VENV)/emulators/mongo-java-server
EMULATOR_SRC := tests/emulator/mongo-java-server
$(EMULATOR)/.built: $(EMULATOR_SRC)/pom.xml $(EMULATOR_SRC)/MongoEmulator.java
	mkdir -p $(EMULATOR)/classes
	mvn -q -B -f $(EMULATOR_SRC)/pom.xml dependency:build-classpath -Dmdep.outputFile=$(abspath $(EMULATOR))/classpath.txt
	javac -d $(EMULATOR)/classes -cp "$$(cat $(EMULATOR)/classpath.txt)" $(EMULATOR_SRC)/MongoEmulator.java
	touch $@

emulator:
	@$(MAKE) --no-print-directory $(EMULATOR)/.built || { \
	  if [ "$$CI" = "true" ]; then echo "the MongoDB emulator could not be built (CI=true requires it)"; exit 1; fi; \
	  echo "warning: the MongoDB emulator could not be built; the MongoDB backend's tests will be skipped"; }

## make redis: redis-server for the Celery variants of the job tests (Debian package), installed when missing.
## Outside CI a failed install is a warning (those tests then skip); with CI=true it is an error.
redis:
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || \
	  { if [ "$$CI" = "true" ]; then echo "redis-server could not be installed (CI=true requires it)"; exit 1; fi; \
	    echo "warning: redis-server could not be installed; the Celery job tests will be skipped"; }

## make test: install what the tests need and run the whole suite
test: install emulator redis
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check fhir_server profiles terminology hl7_adapters smart_apps tests bench scripts
	$(BIN)/mypy

## make bench: the benchmarks (not tests); each prints its figures
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	bash bench/run_all.sh

## make definitions: regenerate fhir_server/definitions from the official R4 package
definitions: install
	$(BIN)/python scripts/generate_definitions.py --package $(SHARED)/fhir/hl7.fhir.r4.core-4.0.1.tgz

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache
