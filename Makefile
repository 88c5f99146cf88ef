# The two commands a newcomer needs (see README): `make demo` and `make test`.
# The virtual environment is cached under $(KBIT_VENV_CACHE), keyed on the dependency files,
# so a fresh clone reuses it; .venv in the repo is a link to it.
PYTHON ?= python3
KBIT_VENV_CACHE ?= $(HOME)/.cache/kbit-venvs
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
VENV_DIR := $(KBIT_VENV_CACHE)/$(DEPS_HASH)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast bench gpu-check clean-venv

# pip's own output goes to $(VENV_DIR)/install.log; it is shown only when the install fails.
PIP_LOG = $(VENV_DIR)/install.log
QUIET_PIP = > $(PIP_LOG) 2>&1 || { tail -n 40 $(PIP_LOG); echo "kbit: install failed; the whole log is $(PIP_LOG)"; exit 1; }

install: $(VENV_DIR)/.installed
	@ln -sfn $(VENV_DIR) $(VENV)
	@$(BIN)/pip install --no-deps --no-build-isolation -e . $(QUIET_PIP)

$(VENV_DIR)/.installed: pyproject.toml
	@echo "kbit: installing torch, transformers, lm-eval, Ray, Streamlit ... into $(VENV_DIR)"
	@echo "      (once per version of pyproject.toml: a few minutes, about 3.4 GB)"
	@start=$$(date +%s) && $(PYTHON) -m venv $(VENV_DIR) \
	  && $(VENV_DIR)/bin/pip install --upgrade pip "setuptools>=68" wheel $(QUIET_PIP) \
	  && $(VENV_DIR)/bin/pip install -e '.[test]' $(QUIET_PIP) \
	  && touch $@ && echo "kbit: environment ready in $$(( $$(date +%s) - start )) s; .venv links to it"

demo: install
	$(BIN)/kbit demo

test: install
	bash scripts/test.sh

# The inner loop: everything but the tests that start Ray, drive a browser, take Postgres away or
# start several heavy processes (pyproject.toml's markers).
test-fast: install
	bash scripts/test.sh -m "not ray and not browser and not outage and not slow"

bench: install
	$(BIN)/python -m benchmarks.kernels

# On a GPU machine: kernel tests compiled, kernel benchmark, a model on GPU vs CPU; tables to benchmarks/gpu/.
# It runs `make install` itself only when no Python there has CUDA torch and triton (docs/kernels.md "GPU check").
# KBIT_GPU_CHECK_DRY_RUN=1 make gpu-check: the same stages on CPU in the Triton interpreter, to a temp folder.
gpu-check:
	bash scripts/gpu_check.sh

clean-venv:
	rm -rf $(VENV_DIR) $(VENV)
