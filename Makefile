# Quick start: `make run` (bot from .env) and `make test` (whole suite). Both create .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SOURCES := bot config handlers services db
PO := $(wildcard locales/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

.PHONY: run demo test install install-dev locales extract update-locales lint format bench clean

run: install locales
	$(BIN)/python -m bot run

# The whole program in a browser without Telegram (no token, no .env): http://127.0.0.1:8080.
# RESET=1 starts over with a freshly seeded database; PORT=8081 serves another port.
demo: install locales
	$(BIN)/python -m bot demo $(if $(RESET),--reset) $(if $(PORT),--port $(PORT))

# The whole suite on SQLite, then on PostgreSQL + Redis where they are installed (throwaway
# servers, tests/servers.py); REQUIRE_SERVERS=1 (CI) fails instead of skipping the second run.
test: install-dev locales
	$(BIN)/python -m pytest
	$(BIN)/python -m tests.servers $(if $(REQUIRE_SERVERS),,--optional) -- $(BIN)/python -m pytest

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# Compiled catalogs are build products (not committed): rebuilt whenever a .po changes.
locales: $(MO)

locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po | $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -D messages -d locales -l $* >/dev/null

# Developers: after adding texts, `make extract update-locales`, translate, `make locales`.
extract: install
	$(BIN)/pybabel extract --no-location --sort-output -k __ -k lazy_gettext \
		-o locales/messages.pot $(SOURCES)

update-locales: extract
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -D messages \
		-i locales/messages.pot -d locales

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev locales
	$(BIN)/python -m bench.import_purchases
	$(BIN)/python -m bench.card_image
	$(BIN)/python -m bench.sale_flow
	$(BIN)/python -m bench.kpi
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.campaigns
	$(BIN)/python -m bench.export
	$(BIN)/python -m bench.branches
	$(BIN)/python -m bench.photo_decode
	$(BIN)/python -m bench.webhook_flood
	$(BIN)/python -m bench.till_latency
	$(BIN)/python -m bench.workers
	$(BIN)/python -m bench.miniapp_paint

clean:
	rm -rf $(VENV) locales/*/LC_MESSAGES/*.mo
