# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck unit bench serve lock clean

# `make serve` on a free local port (or PORT=8123 make serve); analytics and version checks off.
PORT ?= $(shell $(PYTHON) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,bench,server]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/interlock demo

# Everything: lint (ruff and the layers contract), mypy --strict, every test.
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_layers.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The fast lane: every test not marked e2e (tests/e2e is: whole graph, CLI, servers).
unit: $(STAMP)
	$(BIN)/pytest -q -m "not e2e"

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

serve: $(STAMP)
	@test -s "$${INTERLOCK_HOME:-.interlock}/api-keys.json" || { \
	  echo "No API keys yet: creating a staff key (store it; it is shown only once):"; \
	  $(BIN)/interlock keys add --staff --label "make serve"; }
	LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true \
	  $(BIN)/langgraph dev --no-browser --host 127.0.0.1 --port $(PORT) --config langgraph.json

# Regenerate the lock (constraints.txt) from the bounds in pyproject.toml, in a scratch venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet ".[dev,bench,server]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^interlock' > constraints.txt
	.lock-venv/bin/python -m pip --version | awk '{print "pip==" $$2}' >> constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .interlock .mypy_cache .pytest_cache .ruff_cache
