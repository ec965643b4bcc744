# The two commands of the README:
#   make serve   install everything into .venv and run the OPC UA server
#                (demo meters from the built-in simulator when no config is given)
#   make test    install everything (Python and the node-opcua interop client) and run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?=
ARGS   ?=

.PHONY: serve simulate test bench install

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed

serve: $(BIN)/.installed
	$(BIN)/emu-opcua serve $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

simulate: $(BIN)/.installed
	$(BIN)/emu-opcua simulate $(ARGS)

test: $(BIN)/.installed tests/interop/node_modules/.installed
	$(BIN)/pytest -q $(ARGS)

bench: $(BIN)/.installed
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
