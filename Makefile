# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make run    serve on :3000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set)
#   make test   run the whole suite against real PostgreSQL and Redis
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_ARGS ?=

.PHONY: run test lint typecheck check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev,loadtest]'
	touch $(STAMP)

# Artillery (npm) for tests/e2e/test_load_tools.py; that test skips when this could not install.
ARTILLERY_STAMP := var/artillery/.installed
$(ARTILLERY_STAMP):
	@if command -v npm >/dev/null; then \
		mkdir -p var/artillery && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix var/artillery \
			--no-audit --no-fund --loglevel=error artillery@2 && touch $@ \
		|| echo "artillery could not be installed; its test will be skipped"; \
	else echo "npm not found; the Artillery test will be skipped"; fi

run: $(STAMP)
	$(BIN)/thisthat serve

test: $(STAMP) $(ARTILLERY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
