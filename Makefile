# audience-authz: `make run` serves the demo on 127.0.0.1:8080, `make test` runs every test,
# `make test-fast` the fast tier.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
DATABASE ?= sqlite:///audience-authz.db
export AUDIENCE_AUTHZ_TOKENS ?= dev-token
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Cerbos PDP of the benchmark's side-by-side run (bench/cerbos/), from npm into
# bench/.cerbos/ (git-ignored); make test installs it too, for its cross-check tests
CERBOS_VERSION := 0.55.0
CERBOS_STAMP := bench/.cerbos/.installed-$(CERBOS_VERSION)

.PHONY: install run demo test test-fast policy-check policy-test policy-verify clean bench bench-quick bench-install bench-docs stress stress-docs

# the developer's venv: editable, with the test extras; a production host installs only
# '.[postgresql]' (docs/operations.md, checked by tests/test_operations_doc.py)
install: $(VENV)/.installed chromium

# the console's browser tests (tests/test_console.py) drive Debian's chromium: installed when missing
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgresql,nats]'
	$(BIN)/pip install --quiet -e ./client  # the client-only distribution (audience_authz_client)
	touch $@

# `run` serves under gunicorn, as in production (`serve --dev` would be Flask's own server)
run: install
	$(BIN)/audience-authz migrate --database $(DATABASE)
	$(BIN)/audience-authz demo --database $(DATABASE)
	$(BIN)/audience-authz serve --host $(HOST) --port $(PORT) --database $(DATABASE)

demo: install
	$(BIN)/audience-authz demo --database $(DATABASE)

test: install $(CERBOS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/audience-authz policy check
	$(BIN)/audience-authz policy verify
	$(BIN)/pytest

# the fast tier (< 60 s): rules, API shape and errors in process on SQLite, the policy's own
# tests; `make test` adds the `full` tier (server processes, PostgreSQL, workers, signals, timing)
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/audience-authz policy check
	$(BIN)/pytest -q -m "not full"

policy-check: install
	$(BIN)/audience-authz policy check

policy-test: install
	$(BIN)/audience-authz policy test

policy-verify: install
	$(BIN)/audience-authz policy verify

.PHONY: migrate
migrate: install
	$(BIN)/audience-authz migrate --database $(DATABASE)

clean:
	rm -rf $(VENV) *.egg-info audience-authz.db audience-authz.db-wal audience-authz.db-shm

# The benchmark (bench/run.py; docs/performance.md): a 1M-audience store, the service beside
# cedarpy, stock pycasbin and the Cerbos PDP, HTTP with wrk. bench-quick: a tenth, < 2 minutes.
# `make bench-docs` renders the figures of bench-results.json into docs/performance.md.

# the page's figures are written even when the run fails (a mismatch, an error), and make fails
bench: bench-install
	$(BIN)/python -m bench.run --scale 1 --out bench-results.json; status=$$?; \
	$(BIN)/python -m bench.report --results bench-results.json && exit $$status

bench-docs: install
	$(BIN)/python -m bench.report --results bench-results.json

bench-quick: bench-install
	$(BIN)/python -m bench.run --scale 0.1 --out bench-results-quick.json

bench-install: $(VENV)/.bench-installed $(CERBOS_STAMP)
	@command -v wrk >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }

$(CERBOS_STAMP):
	@command -v npm >/dev/null || { echo "npm is needed to install the Cerbos PDP (e.g. apt-get install npm)"; exit 1; }
	rm -rf bench/.cerbos
	npm install --no-save --no-audit --no-fund --prefix bench/.cerbos @cerbos/cerbos-linux-x64@$(CERBOS_VERSION)
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# The reliability tests at long sizes (make test runs them small); override any size, e.g.
# `make stress STRESS_SECONDS=300`. Writes each test's figures to stress-results.json and
# then the "Figures of the last `make stress`" section of docs/reliability.md from it.
STRESS_SECONDS ?= 60
STRESS_LOAD_SECONDS ?= 20
STRESS_THREADS ?= 24
STRESS_WORKERS ?= 3
STRESS_ROUNDS ?= 200
STRESS_FANOUT ?= 10000
STRESS_FUZZ_EXAMPLES ?= 200
STRESS_MACHINE_EXAMPLES ?= 60
STRESS_MACHINE_STEPS ?= 40
# the figures cover both databases; `make stress STRESS_REQUIRE_POSTGRES=` lets PostgreSQL be skipped
STRESS_REQUIRE_POSTGRES ?= 1
stress: install
	rm -f stress-results.json
	AUDIENCE_AUTHZ_STRESS_SECONDS=$(STRESS_SECONDS) AUDIENCE_AUTHZ_STRESS_THREADS=$(STRESS_THREADS) \
	AUDIENCE_AUTHZ_STRESS_LOAD_SECONDS=$(STRESS_LOAD_SECONDS) \
	AUDIENCE_AUTHZ_STRESS_WORKERS=$(STRESS_WORKERS) AUDIENCE_AUTHZ_STRESS_ROUNDS=$(STRESS_ROUNDS) \
	AUDIENCE_AUTHZ_STRESS_FANOUT=$(STRESS_FANOUT) AUDIENCE_AUTHZ_STRESS_FUZZ_EXAMPLES=$(STRESS_FUZZ_EXAMPLES) \
	AUDIENCE_AUTHZ_STRESS_MACHINE_EXAMPLES=$(STRESS_MACHINE_EXAMPLES) \
	AUDIENCE_AUTHZ_STRESS_MACHINE_STEPS=$(STRESS_MACHINE_STEPS) \
	AUDIENCE_AUTHZ_STRESS_RESULTS=$(CURDIR)/stress-results.json AUDIENCE_AUTHZ_REQUIRE_POSTGRES=$(STRESS_REQUIRE_POSTGRES) \
	$(BIN)/pytest -s -q tests/test_concurrency.py tests/test_faults.py tests/test_pg_terminate.py tests/test_fuzz.py \
		tests/test_fuzz_console.py tests/test_isolation.py tests/test_analysis_limits.py
	$(MAKE) stress-docs

# docs/reliability.md's figures section, rewritten from stress-results.json
stress-docs: install
	$(BIN)/python -m tests.support.stress_report
