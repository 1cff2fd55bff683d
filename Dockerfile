# syntax=docker/dockerfile:1.7
# acestep-worker: one image for both modes (MODE=serverless runs handler.py, MODE=pod the HTTP API on 8000),
# checkpoints fetched, converted and verified at build time.
#   DOCKER_BUILDKIT=1 docker build --secret id=hf_token,env=HF_TOKEN \
#       --build-arg DIT_MODEL=acestep-v15-turbo --build-arg LM_MODEL=acestep-5Hz-lm-1.7B -t acestep-worker .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${CUDA_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# the base image tag pins the distribution; apt versions are left to its security updates.
# gcc and the Python headers: torch.compile's Triton builds its small launcher module at run time
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc libc6-dev \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# torch's CUDA build first, pinned; then the project with every dependency pinned by constraints.txt
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY constraints.txt pyproject.toml README.md ./
COPY inference ./inference
COPY api_shim ./api_shim
COPY client ./client
COPY builder ./builder
COPY handler.py generate_music.py test_input.json ./
RUN pip install -c constraints.txt .
# optional: flash-attn for the DiT's sliding-window attention (ACESTEP_ATTENTION_BACKEND=auto then picks it);
# e.g. --build-arg FLASH_ATTN="flash-attn==2.8.3". Off by default: a wheel must exist for this torch and CUDA
ARG FLASH_ATTN=""
# the version is pinned in the build argument itself
# hadolint ignore=DL3013
RUN if [ -n "${FLASH_ATTN}" ]; then pip install --no-build-isolation "${FLASH_ATTN}"; fi

# --- build stage: fetch (HF_TOKEN as a build secret, never in a layer), convert, verify ---
FROM base AS checkpoints
ARG DIT_MODEL=acestep-v15-turbo
ARG LM_MODEL=acestep-5Hz-lm-1.7B
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    python -m builder.fetch_checkpoints --dest /build/src --dit "${DIT_MODEL}" --lm "${LM_MODEL}"
RUN python -m builder.convert --source /build/src --dit "${DIT_MODEL}" --lm "${LM_MODEL}" --out /app/checkpoints \
    && python -m builder.verify "/app/checkpoints/${DIT_MODEL}" --dtype bfloat16 --lm "${LM_MODEL}" \
    && rm -rf /build/src

# --- the image: code, verified checkpoints, offline at run time ---
FROM base AS runtime
ARG DIT_MODEL=acestep-v15-turbo
ARG LM_MODEL=acestep-5Hz-lm-1.7B
COPY --from=checkpoints /app/checkpoints /app/checkpoints
# compiled-kernel caches made with builder/bake_compile_cache.py on the target GPU (see compile-cache/README.md)
COPY compile-cache/ /app/checkpoints/compile-cache/
COPY docker/entrypoint.sh /app/docker/entrypoint.sh
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ACESTEP_CHECKPOINT_DIR=/app/checkpoints \
    ACESTEP_DIT_MODEL=${DIT_MODEL} \
    ACESTEP_LM_MODEL=${LM_MODEL} \
    MODE=serverless
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
