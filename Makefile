# Two commands on a fresh machine: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint install lock demo-data clean

# Exact versions from the lock file; the ranges in pyproject.toml only say what may be locked.
$(INSTALLED): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED)

# After changing dependencies in pyproject.toml: pin them again (runtime for the image; runtime,
# demo and dev tools for `make install`). `make lock LOCK_FLAGS=--upgrade` takes the newest.
LOCK := $(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links
lock: install
	$(LOCK) $(LOCK_FLAGS) --output-file requirements.lock pyproject.toml
	$(LOCK) $(LOCK_FLAGS) --extra dev --extra demo --output-file requirements-dev.lock pyproject.toml

demo-data: install
	set -a && . config/demo.env && set +a && \
	  $(BIN)/python manage.py migrate --noinput && $(BIN)/python manage.py seed_demo

run: demo-data
	@echo "Console: http://localhost:8000/  (Ctrl-C stops every process)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.demo -e config/demo.env start

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf var/
