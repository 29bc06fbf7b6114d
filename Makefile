# audience-authz: `make run` serves the demo on 127.0.0.1:8080, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
DATABASE ?= sqlite:///audience-authz.db
export AUDIENCE_AUTHZ_TOKENS ?= dev-token

.PHONY: install run demo test policy-check policy-test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# `run` serves under gunicorn, as in production (`serve --dev` would be Flask's own server)
run: install
	$(BIN)/audience-authz migrate --database $(DATABASE)
	$(BIN)/audience-authz demo --database $(DATABASE)
	$(BIN)/audience-authz serve --host $(HOST) --port $(PORT) --database $(DATABASE)

demo: install
	$(BIN)/audience-authz demo --database $(DATABASE)

test: install
	$(BIN)/audience-authz policy check
	$(BIN)/pytest

policy-check: install
	$(BIN)/audience-authz policy check

policy-test: install
	$(BIN)/audience-authz policy test

.PHONY: migrate
migrate: install
	$(BIN)/audience-authz migrate --database $(DATABASE)

clean:
	rm -rf $(VENV) *.egg-info audience-authz.db audience-authz.db-wal audience-authz.db-shm
