# closeloop — `make demo` and `make test` work from a clean clone (they create .venv when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest -n 2

.PHONY: venv demo test test-sqlite test-postgres scenarios bench bench-quick soak audit lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The main job: build the demo company in ./demo.db and print its reports.
demo: $(STAMP)
	$(BIN)/closeloop demo

## The whole suite on SQLite, then on a throwaway PostgreSQL cluster (started and stopped here).
test: $(STAMP)
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: $(STAMP)
	$(PYTEST)

test-postgres: $(STAMP)
	$(BIN)/python -m closeloop.devtools.pgcluster -- $(PYTEST)

scenarios: $(STAMP)
	$(BIN)/closeloop scenario run scenarios

bench: $(STAMP)
	$(BIN)/closeloop bench

bench-quick: $(STAMP)
	$(BIN)/closeloop bench --quick --output bench/results-quick.json

soak: $(STAMP)
	$(BIN)/python -m closeloop.bench.soak
	$(BIN)/python -m closeloop.bench.crash
	$(BIN)/python -m closeloop.bench.scale_check
	$(BIN)/python -m closeloop.bench.scale --customers 100000 --usage-per-customer 100

## Known vulnerabilities in the installed dependencies (pip-audit); a network failure warns, never fails.
audit: $(STAMP)
	$(BIN)/python -m closeloop.devtools.depaudit

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info demo.db demo.db-* closeloop.db closeloop.db-*

.PHONY: screenshots serve

## The main pages of the web application as PNGs in docs/screenshots/ (needs chromium: apt-get install chromium).
screenshots: $(STAMP)
	$(BIN)/python -m closeloop.web.screenshots --out docs/screenshots

## The REST API and web application on http://127.0.0.1:8000 (users: closeloop users add; keys: closeloop keys create).
serve: $(STAMP)
	$(BIN)/closeloop serve
