# Two commands do all the set-up: `make demo` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: install demo test lint format benchmark

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

demo: install
	$(MANAGE) migrate --noinput
	$(MANAGE) ensure_demo_admin
	$(MANAGE) run_demo 127.0.0.1:8000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: install
	$(BIN)/python benchmarks/alerts_fetch.py
	$(BIN)/python benchmarks/pages_render.py
	$(BIN)/python benchmarks/connectivity_duration.py
	$(BIN)/python benchmarks/slow_defender_pages.py
	$(BIN)/python benchmarks/first_step_latency.py
	$(BIN)/python benchmarks/sync_sweep.py
