# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make run    serve on :3000 (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set)
#   make test   run the whole suite against real PostgreSQL and Redis
# `make loadtest-install` adds the load client and its charts (docs/load-testing.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Exact versions (pip-compile lock files): run = runtime + embedded services, test = everything.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
LOADTEST_STAMP := $(VENV)/.installed-loadtest
BENCH_ARGS ?=
CHAOS_ARGS ?=
COMPILE := $(BIN)/pip-compile --quiet --strip-extras --annotation-style=line \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test loadtest-install lint typecheck check bench chaos lock clean play-client

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Artillery (npm) for tests/e2e/test_load_tools.py; that test skips when this could not install.
ARTILLERY_STAMP := var/artillery/.installed
$(ARTILLERY_STAMP):
	@if command -v npm >/dev/null; then \
		mkdir -p var/artillery && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix var/artillery \
			--no-audit --no-fund --loglevel=error artillery@2 && touch $@ \
		|| echo "artillery could not be installed; its test will be skipped"; \
	else echo "npm not found; the Artillery test will be skipped"; fi

$(RUN_STAMP): pyproject.toml requirements/run.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/run.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(TEST_STAMP): pyproject.toml requirements/test.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# What `make run` installs, plus the loadtest and plots extras at the versions of the lock.
$(LOADTEST_STAMP): $(RUN_STAMP) requirements/test.txt
	$(BIN)/python -m pip install --quiet -c requirements/test.txt -e '.[loadtest,plots]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/thisthat serve

loadtest-install: $(LOADTEST_STAMP)

test: $(TEST_STAMP) $(ARTILLERY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(TEST_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Crash and disturb two local nodes under bets; exits 1 on any violation. See docs/chaos.md.
chaos: $(TEST_STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# Refresh the playground's socket.io browser build from the version pinned in tools/package-lock.json.
play-client:
	npm ci --prefix tools --no-audit --no-fund
	cp tools/node_modules/socket.io-client/dist/socket.io.min.js server/http/static/play/
	cp tools/node_modules/socket.io-client/LICENSE server/http/static/play/socket.io-client.LICENSE

# Re-resolve the lock files after changing pyproject.toml's dependencies.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet pip-tools
	$(COMPILE) --extra embedded --extra dev --extra loadtest --extra plots -o requirements/test.txt pyproject.toml
	$(COMPILE) --extra embedded -c requirements/test.txt -o requirements/run.txt pyproject.toml
	$(COMPILE) -c requirements/test.txt -o requirements/base.txt pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
