# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make run    serve on :3000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set)
#   make test   run the whole suite against real PostgreSQL and Redis
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_ARGS ?=

.PHONY: run test lint typecheck check bench clean play-client

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev,loadtest]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/thisthat serve

test: $(STAMP)
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

# Refresh the playground's socket.io browser build from the version pinned in tools/package-lock.json.
play-client:
	npm ci --prefix tools --no-audit --no-fund
	cp tools/node_modules/socket.io-client/dist/socket.io.min.js server/static/play/
	cp tools/node_modules/socket.io-client/LICENSE server/static/play/socket.io-client.LICENSE

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
