#!/bin/sh
# One image, two modes: MODE=serverless (default) runs the RunPod worker, MODE=pod the ACE-Step HTTP API.
# A command after the image name runs instead (e.g. `python -m builder.bake_compile_cache --out /out`).
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
case "${MODE:-serverless}" in
    serverless)
        exec python -u /app/handler.py
        ;;
    pod)
        export ACESTEP_OUTPUT_DIR="${ACESTEP_OUTPUT_DIR:-/app/outputs}"
        export ACESTEP_API_PORT="${ACESTEP_API_PORT:-8000}"
        exec python -m api_shim
        ;;
    *)
        echo "MODE must be 'serverless' or 'pod' (got '${MODE}')" >&2
        exit 2
        ;;
esac
