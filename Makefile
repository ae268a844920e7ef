# sparseforge: `make demo` runs the toolkit on the bundled examples; `make test` installs what the tests need and
# runs them. Both create .venv/ in the repository on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Debian packages used by the cross-target tests (aarch64 under qemu, wasm32 in wasmtime). Needs root; skipped
# (the tests that need them then skip) when apt-get is not usable.
system-deps:
	@bash scripts/install-system-deps.sh

demo: install
	$(BIN)/python examples/demo.py

test: install system-deps lint
	$(BIN)/python -m pytest -q --durations=30

# The layering contract (pyproject.toml [tool.importlinter]): a floor imports only the floors below it.
lint: install
	$(BIN)/lint-imports

test-fast: install
	$(BIN)/python -m pytest -q -m "not tvm and not cross and not slow"

clean:
	rm -rf build $(VENV) src/*.egg-info
