# Everything a fresh machine needs: `make demo` makes songs, `make test` runs the tests.
# torch is installed first from its pinned CPU build, so no step pulls CUDA wheels.
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
ACESTEP_CHECKPOINT_DIR ?= $(CURDIR)/checkpoints
ACESTEP_DIT_MODEL ?= acestep-v15-turbo
OUTPUT_DIR ?= $(CURDIR)/outputs

.PHONY: install demo test bench image image-smoke clean

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
	$(PY) -m ruff check inference api_shim client builder docker handler.py generate_music.py bench tests
	$(PY) -m pytest -q

bench: install
	$(PY) bench/overhead.py
	$(PY) bench/shim_polls.py
	$(PY) bench/lm.py
	$(PY) bench/gpu.py
	$(PY) bench/soak.py
	$(PY) bench/fidelity.py
	$(PY) bench/encoders.py

# The image with docker (when its daemon answers) or podman; IMAGE and IMAGE_ARGS (e.g. --build-arg LM_MODEL=none)
# pass through. The Hugging Face token, when HF_TOKEN is set, goes in as the build secret hf_token.
IMAGE ?= acestep-worker:latest
IMAGE_ARGS ?=
image:
	@set -e; tool=""; \
	if command -v docker >/dev/null && docker info >/dev/null 2>&1; then tool=docker; \
	elif command -v podman >/dev/null; then tool=podman; fi; \
	if [ -z "$$tool" ]; then echo "make image: neither a running docker nor podman is here" >&2; exit 1; fi; \
	export DOCKER_BUILDKIT=1; set --; \
	if [ -n "$${HF_TOKEN:-}" ]; then \
		secret_file=$$(mktemp); trap 'rm -f "$$secret_file"' EXIT INT TERM; \
		printf %s "$$HF_TOKEN" > "$$secret_file"; set -- --secret "id=hf_token,src=$$secret_file"; fi; \
	echo "$$tool build $(IMAGE_ARGS) -t $(IMAGE) ."; \
	"$$tool" build "$$@" $(IMAGE_ARGS) -t "$(IMAGE)" .

# The CI build, with no docker daemon and no container runtime: podman build (chroot isolation) of the real
# Dockerfile on a local Debian base, a tiny original-layout checkpoint as the checkpoint source, then the
# image's own entrypoint from its filesystem in both modes (docker/image_smoke.py). Needs root.
image-smoke: install
	$(PY) docker/image_smoke.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	rm -rf --one-file-system .image-smoke
