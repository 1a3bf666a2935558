# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Aegra's own environment (Python 3.12), for the replicas of `make cluster` and their tests.
PYTHON312 ?= $(or $(lastword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python)),$(shell command -v python3.12))
AEGRA := .aegra-venv
AEGRA_STAMP := $(AEGRA)/.installed-stamp
# The foreign agents' own environments (their pins conflict with ours): an AutoGen team and a
# CrewAI crew, each served as a LangGraph graph by foreign/serve.py.
AUTOGEN := .autogen-venv
CREWAI := .crewai-venv
FOREIGN_STAMPS := $(AUTOGEN)/.installed-stamp $(CREWAI)/.installed-stamp

.PHONY: install demo test lint typecheck unit bench serve lock clean cluster cluster-down cluster-install foreign demo-foreign

# `make serve` on a free local port (or PORT=8123 make serve); analytics and version checks off.
PORT ?= $(shell $(PYTHON) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,bench,server,maf]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/interlock demo

# Everything: lint (ruff and the layers contract), mypy --strict, every test.
test: $(STAMP) $(AEGRA_STAMP) $(FOREIGN_STAMPS) lint typecheck
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
	.lock-venv/bin/python -m pip install --quiet ".[dev,bench,server,maf]"
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^interlock' > constraints.txt
	.lock-venv/bin/python -m pip --version | awk '{print "pip==" $$2}' >> constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(AEGRA) $(AUTOGEN) $(CREWAI) .interlock .mypy_cache .pytest_cache .ruff_cache

# Several replicas on Aegra, Postgres and Redis: `make cluster REPLICAS=3 PORT=8300`.
REPLICAS ?= 3

$(AEGRA_STAMP): cluster/requirements.txt cluster/constraints.txt pyproject.toml
	@test -n "$(PYTHON312)" || { echo "Aegra needs Python 3.12 (pyenv install 3.12)"; exit 2; }
	$(PYTHON312) -m venv $(AEGRA)
	$(AEGRA)/bin/python -m pip install --quiet --disable-pip-version-check -c cluster/constraints.txt -r cluster/requirements.txt -e .
	touch $(AEGRA_STAMP)

cluster-install: $(AEGRA_STAMP)

cluster: $(STAMP) $(AEGRA_STAMP)
	@test -s "$${INTERLOCK_CLUSTER_HOME:-.interlock/cluster}/api-keys.json" || { \
	  mkdir -p "$${INTERLOCK_CLUSTER_HOME:-.interlock/cluster}"; \
	  echo "No API keys yet: creating a staff key (store it; it is shown only once):"; \
	  INTERLOCK_HOME="$${INTERLOCK_CLUSTER_HOME:-.interlock/cluster}" $(BIN)/interlock keys add --staff --label "make cluster"; }
	$(BIN)/python -m graphs.cluster up --replicas $(REPLICAS) --port $(if $(filter command line,$(origin PORT)),$(PORT),8300)

cluster-down: $(STAMP)
	$(BIN)/python -m graphs.cluster down

# The foreign agents: `make foreign` builds their environments; `make demo-foreign` plays their
# scenarios offline (a scripted model behind the gateway).
$(AUTOGEN)/.installed-stamp: foreign/autogen/requirements.txt foreign/autogen/constraints.txt
	$(PYTHON) -m venv $(AUTOGEN)
	$(AUTOGEN)/bin/python -m pip install --quiet --disable-pip-version-check -c foreign/autogen/constraints.txt -r foreign/autogen/requirements.txt
	touch $@

$(CREWAI)/.installed-stamp: foreign/crewai/requirements.txt foreign/crewai/constraints.txt
	$(PYTHON) -m venv $(CREWAI)
	$(CREWAI)/bin/python -m pip install --quiet --disable-pip-version-check -c foreign/crewai/constraints.txt -r foreign/crewai/requirements.txt
	touch $@

foreign: $(FOREIGN_STAMPS)

demo-foreign: $(STAMP) $(FOREIGN_STAMPS)
	$(BIN)/interlock demo --foreign
