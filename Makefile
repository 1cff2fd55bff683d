# Everything a fresh machine needs: `make demo` makes songs, `make test` runs the tests.
# torch is installed first from its pinned CPU build, so no step pulls CUDA wheels.
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
ACESTEP_CHECKPOINT_DIR ?= $(CURDIR)/checkpoints
ACESTEP_DIT_MODEL ?= acestep-v15-turbo
OUTPUT_DIR ?= $(CURDIR)/outputs

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# One song batch from test_input.json through RunPod's local test mode, written to outputs/.
# Without a real checkpoint a tiny random-weight one is made first (it says so).
demo: install
	$(PY) -m inference.demo_checkpoint --if-missing "$(ACESTEP_CHECKPOINT_DIR)/$(ACESTEP_DIT_MODEL)" \
		--lm acestep-5Hz-lm-0.6B
	ACESTEP_CHECKPOINT_DIR="$(ACESTEP_CHECKPOINT_DIR)" ACESTEP_DIT_MODEL="$(ACESTEP_DIT_MODEL)" \
		ACESTEP_OUTPUT_DIR="$(OUTPUT_DIR)" $(PY) handler.py
	@echo "songs written to $(OUTPUT_DIR)"

test: install
	$(PY) -m ruff check inference api_shim client builder handler.py generate_music.py bench tests
	$(PY) -m pytest -q

bench: install
	$(PY) bench/overhead.py
	$(PY) bench/shim_polls.py
	$(PY) bench/lm.py
	$(PY) bench/gpu.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
