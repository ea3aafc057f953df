# Gatehouse: `make run` serves a fresh checkout, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
# The suite runs on every core (pytest-xdist); `make test PYTEST_ARGS=-n0` runs it in one process.
PYTEST_ARGS ?= -n auto

.PHONY: run test lint format migrate superuser demo bench bench-smoke clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# A .env with fresh secrets, written once; an existing .env is never touched.
.env: | $(VENV)/.runtime
	@$(PY) -c "import secrets; from cryptography.fernet import Fernet; \
	open('.env', 'x').write('DEBUG=true\nSECRET_KEY=' + secrets.token_urlsafe(50) + '\nFIELD_ENCRYPTION_KEY=' + Fernet.generate_key().decode() + '\nALLOWED_HOSTS=127.0.0.1,localhost\n')"
	@echo "Wrote .env with a fresh SECRET_KEY and FIELD_ENCRYPTION_KEY."

migrate: $(VENV)/.runtime .env
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py runserver $(HOST):$(PORT)

superuser: migrate
	$(PY) manage.py createsuperuser

demo: migrate
	$(PY) manage.py demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# axe-core for the browser tests' accessibility checks (skipped quietly without npm).
tests/browser/.npm/node_modules/axe-core/axe.min.js:
	-command -v npm >/dev/null && npm install --no-audit --no-fund --silent --prefix tests/browser/.npm axe-core@4.14.1

# Node peers for the interop tests, pinned in tests/peers/node/package-lock.json (installed once; skipped
# quietly without npm): the reference server, the TypeScript SDK client, mcp-remote, the supergateway bridge.
tests/peers/node/node_modules/.package-lock.json: tests/peers/node/package-lock.json
	-command -v npm >/dev/null && npm ci --no-audit --no-fund --silent --prefix tests/peers/node

test: $(VENV)/.dev .env tests/browser/.npm/node_modules/axe-core/axe.min.js tests/peers/node/node_modules/.package-lock.json
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Benchmarks (PostgreSQL and Redis on 127.0.0.1): the full run writes bench/RESULTS.md.
bench: $(VENV)/.dev
	$(PY) bench/run.py

bench-smoke: $(VENV)/.dev
	$(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
