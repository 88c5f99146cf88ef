# The two commands a newcomer needs (see README): `make demo` and `make test`.
# The virtual environment is cached under $(KBIT_VENV_CACHE), keyed on the dependency files,
# so a fresh clone reuses it; .venv in the repo is a link to it.
PYTHON ?= python3
KBIT_VENV_CACHE ?= $(HOME)/.cache/kbit-venvs
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
VENV_DIR := $(KBIT_VENV_CACHE)/$(DEPS_HASH)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean-venv

install: $(VENV_DIR)/.installed
	@ln -sfn $(VENV_DIR) $(VENV)
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . >/dev/null

$(VENV_DIR)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/pip install -q --upgrade pip "setuptools>=68" wheel
	$(VENV_DIR)/bin/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/kbit demo

test: install
	bash scripts/test.sh

bench: install
	$(BIN)/python -m benchmarks.kernels

clean-venv:
	rm -rf $(VENV_DIR) $(VENV)
