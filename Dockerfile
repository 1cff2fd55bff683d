# syntax=docker/dockerfile:1.7
# acestep-worker: one image, two modes (MODE=serverless: the RunPod worker; MODE=pod: the ACE-Step HTTP API
# on 8000), checkpoints fetched, converted and verified at build time. README "Building and deploying the image".
#
#   docker build --secret id=hf_token,env=HF_TOKEN -t acestep-worker .                  # weights from Hugging Face
#   docker build --build-arg CHECKPOINTS=context --build-arg CHECKPOINTS_DIR=my-ckpts -t acestep-worker .
#   docker build --build-arg CHECKPOINTS=none -t acestep-worker:slim .      # no weights: RunPod's cached models
#
# Frontend features used here and the first dockerfile frontend with each (BuildKit's release notes,
# https://docs.docker.com/build/buildkit/dockerfile-release-notes/); tests/test_image_files.py fails when a
# feature newer than the syntax line above, or one missing from this table, is used:
#   ARG before FROM, ARG in FROM, FROM ... AS, COPY --from    classic (no frontend version)
#   RUN --mount=type=secret (the file form, /run/secrets/<id>)  1.2
# Not used on purpose: the secret mount's env= option (1.10; buildah/podman refuse it) and COPY --link (1.4;
# buildah 1.28 refuses it).

# The CUDA runtime (libcudart and the driver hooks) without NVIDIA's math libraries: torch's wheels bring their
# own cuBLAS, cuDNN, NCCL, ..., so the -runtime-/-cudnn- tags would carry every one of them twice (about 3 GB).
# Ubuntu 24.04's Python is 3.12.3, a final release (22.04's python3.11 package is 3.11.0~rc1).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
# where the checkpoints come from: "huggingface" (download), "context" (the folder CHECKPOINTS_DIR of the
# build context, in the original ACE-Step 1.5 layout or the diffusers layout, as builder/fetch_checkpoints writes),
# or "none": the slim image, no weights inside; the worker takes them from the host's Hugging Face cache
# (RunPod's cached models, README "Cached models: the slim image")
ARG CHECKPOINTS=huggingface
# the checkpoints, declared once: every stage that needs them takes these defaults with a bare ARG
ARG DIT_MODEL=acestep-v15-turbo
ARG LM_MODEL=acestep-5Hz-lm-1.7B

# --- the interpreter: a distribution Python in a virtual environment ----------------------------------------
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# the base image tag pins the distribution; apt versions are left to its security updates.
# gcc and the Python headers: torch.compile's Triton builds its small launcher module at run time
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# --- dependencies only: pyproject.toml and constraints.txt, never the code, so a .py edit keeps this layer ---
FROM base AS deps
# torch first, pinned: its CUDA build (and its dependencies) from TORCH_INDEX_URL, or from a folder of wheels
# (TORCH_WHEELS, e.g. a CPU build mounted at build time with podman's -v) with its dependencies from PyPI
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_WHEELS=""
RUN if [ -n "${TORCH_WHEELS}" ]; then pip install --find-links "${TORCH_WHEELS}" "torch==${TORCH_VERSION}"; \
    else pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; fi
COPY pyproject.toml constraints.txt docker/requirements.py /tmp/deps/
RUN python /tmp/deps/requirements.py /tmp/deps/pyproject.toml > /tmp/deps/requirements.txt \
    && pip install -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps
# optional: flash-attn for the DiT's sliding-window attention (ACESTEP_ATTENTION_BACKEND=auto then picks it);
# e.g. --build-arg FLASH_ATTN="flash-attn==2.8.3". Off by default: a wheel must exist for this torch and CUDA
ARG FLASH_ATTN=""
# the version is pinned in the build argument itself
# hadolint ignore=DL3013
RUN if [ -n "${FLASH_ATTN}" ]; then pip install --no-build-isolation "${FLASH_ATTN}"; fi

# --- checkpoint sources: one of these three stages is built, by CHECKPOINTS. FROM base, not deps: a dependency
# bump never downloads the ~10 GB again ------------------------------------------------------------------------------
FROM base AS checkpoints-huggingface
ARG DIT_MODEL
ARG LM_MODEL
# the fetcher's one dependency, at constraints.txt's pin (a test keeps the two equal)
ARG HF_HUB_VERSION=2.4.0
RUN pip install "huggingface_hub==${HF_HUB_VERSION}"
# only the fetcher: no other code change invalidates the download
COPY builder/__init__.py builder/layout.py builder/fetch_checkpoints.py /app/builder/
# the token is a build secret read from its file, never in a layer, an ARG or the image's history
RUN --mount=type=secret,id=hf_token \
    python -m builder.fetch_checkpoints --dest /build/src --dit "${DIT_MODEL}" --lm "${LM_MODEL}" \
        --token-file /run/secrets/hf_token

FROM base AS checkpoints-context
ARG DIT_MODEL
ARG LM_MODEL
ARG CHECKPOINTS_DIR=checkpoints-src
COPY builder/__init__.py builder/layout.py builder/fetch_checkpoints.py /app/builder/
COPY ${CHECKPOINTS_DIR} /build/src
# the fetcher's completeness check in place: a missing file stops the build with its name
RUN python -m builder.fetch_checkpoints --dest /build/src --dit "${DIT_MODEL}" --lm "${LM_MODEL}" --check

# the slim image: nothing to fetch
FROM base AS checkpoints-none
RUN mkdir -p /build/src

# the chosen source under one stage name, for the COPY --from below
# hadolint ignore=DL3006
FROM checkpoints-${CHECKPOINTS} AS source

# --- conversion: depends on the weights, the dependencies and builder/ alone ----------------------------------------
FROM deps AS converted
ARG DIT_MODEL
ARG LM_MODEL
ARG CHECKPOINTS
COPY --from=source /build/src /build/src
COPY builder /app/builder
RUN python -m builder.convert --source /build/src --dit "${DIT_MODEL}" --lm "${LM_MODEL}" --out /app/checkpoints \
        --checkpoints "${CHECKPOINTS}"

# --- verification with the worker's own loader: its manifests are all the image takes from this stage ----------
FROM converted AS verified
ARG DIT_MODEL
ARG LM_MODEL
ARG CHECKPOINTS
COPY inference /app/inference
RUN python -m builder.verify "/app/checkpoints/${DIT_MODEL}" --dtype bfloat16 --lm "${LM_MODEL}" \
        --manifests /build/manifests --checkpoints "${CHECKPOINTS}"

# --- the image: dependencies, checkpoints, the code, and last the manifests (a .py edit rebuilds the small layers) --
FROM deps AS runtime
ARG DIT_MODEL
ARG LM_MODEL
COPY --from=converted /app/checkpoints /app/checkpoints
# compiled-kernel caches made with builder/bake_compile_cache.py on the target GPU (see compile-cache/README.md)
COPY compile-cache/ /app/checkpoints/compile-cache/
COPY docker/entrypoint.sh /app/docker/entrypoint.sh
COPY inference /app/inference
COPY api_shim /app/api_shim
COPY client /app/client
COPY builder /app/builder
COPY handler.py generate_music.py test_input.json /app/
# last: verification runs again when inference/ changes, and then only this layer of the image is new
COPY --from=verified /build/manifests/ /app/checkpoints/
ENV PYTHONPATH=/app \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ACESTEP_CHECKPOINT_DIR=/app/checkpoints \
    ACESTEP_DIT_MODEL=${DIT_MODEL} \
    ACESTEP_LM_MODEL=${LM_MODEL} \
    MODE=serverless
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
