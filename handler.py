"""RunPod serverless entry point: the cold start at import, then one job at a time.

    python handler.py                         # RunPod's local test mode: runs test_input.json
    python handler.py --test_input '{...}'    # ... or the given job
    python handler.py --rp_serve_api          # RunPod's local API server (/run, /runsync, /status)

Actions (``input.action``): ``generate`` (default), ``models``, ``format_input``. Every failure is a
one-line ``{"error": ...}`` without paths or secrets, and the worker goes on serving, with two exceptions:
after a fatal GPU error the answer also carries ``refresh_worker: true``, so RunPod replaces this worker
instead of sending it more jobs it would fail; and a failed upload lists the audios that did reach the
bucket under ``uploaded``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

# RunPod's SDK logs whole jobs (inputs, s3Config credentials, base64 audio) at DEBUG: keep it at INFO
# unless the operator asks otherwise.
os.environ.setdefault("RUNPOD_DEBUG_LEVEL", "INFO")

import runpod  # noqa: E402

from inference.accelerator_faults import AcceleratorFault  # noqa: E402
from inference.errors import AceStepError, CachedModelError, CheckpointError, InputError, StorageError, public_message  # noqa: E402
from inference.gpu_worker import GpuWorker  # noqa: E402
from inference.service import GenerationService  # noqa: E402
from inference.settings import Settings  # noqa: E402
from inference.delivery import secrets_of  # noqa: E402

ACTIONS = ("generate", "models", "format_input")
PROGRESS_INTERVAL_S = 1.0

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
log = logging.getLogger("acestep.handler")

SETTINGS = Settings.from_env()
try:
    SERVICE: GenerationService | None = GenerationService.start(SETTINGS)
    LOAD_ERROR: str | None = None
    RETRY_ELSEWHERE = False
except CheckpointError as err:
    SERVICE, LOAD_ERROR = None, str(err)
    RETRY_ELSEWHERE = isinstance(err, CachedModelError)  # the host's cache may be whole for a later worker
    log.error("cannot serve: %s", LOAD_ERROR)
except Exception as err:  # a broken install or GPU: one clear line, never a traceback at import
    log.exception("loading failed")
    SERVICE, LOAD_ERROR, RETRY_ELSEWHERE = None, public_message(err, secrets_of(SETTINGS)), False
    log.error("cannot serve: %s", LOAD_ERROR)
# one GPU thread (compatible waiting jobs render as one batch), encoding and upload beside it
WORKER = GpuWorker(SERVICE) if SERVICE else None


def _progress_sender(job: dict[str, Any]):
    """Progress for RunPod's /status while the job runs (only on RunPod: it needs its webhook)."""
    if not SETTINGS.runpod_post_output_url:
        return None
    last = {"at": 0.0, "stage": None}

    def send(fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == last["stage"] and now - last["at"] < PROGRESS_INTERVAL_S and fraction < 1.0:
            return
        last.update(at=now, stage=stage)
        runpod.serverless.progress_update(job, {"progress": round(fraction, 3), "stage": stage})

    return send


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """One job. The accelerator's part runs on the one GPU thread; encoding and upload run beside it, so with
    ``concurrency_modifier`` the next job is generated while this one is encoded and uploaded, and compatible
    jobs that wait for the GPU together are rendered as one batch."""
    job_id = str(job.get("id", "local"))
    job_input = job.get("input")
    s3_config = job.get("s3Config") or (job_input.get("s3Config") if isinstance(job_input, dict) else None)
    try:
        if SERVICE is None:
            error = CachedModelError if RETRY_ELSEWHERE else CheckpointError
            raise error(f"this worker could not load its model: {LOAD_ERROR}")
        action = job_input.get("action", "generate") if isinstance(job_input, dict) else "generate"
        if action == "generate":
            return (await WORKER.generate(job_input, job_id, s3_config, _progress_sender(job))).model_dump()
        if action == "models":
            return SERVICE.models().model_dump()
        if action == "format_input":
            return (await WORKER.on_gpu(SERVICE.format_input, job_input)).model_dump()
        raise InputError(f"action must be one of {', '.join(ACTIONS)} (got {str(action)[:40]!r})")
    except AceStepError as err:
        message = public_message(err, secrets_of(SETTINGS, s3_config))
        log.warning("job %s failed: %s", job_id, message)
        failed: dict[str, Any] = {"error": message}
        if isinstance(err, AcceleratorFault):
            failed["error"] = f"{message}; RunPod replaces it, submit the job again"
            failed["refresh_worker"] = True  # RunPod stops this worker after the job and starts a fresh one
        if isinstance(err, CachedModelError):
            failed["refresh_worker"] = True  # a fresh worker may find the host's model cache complete
        if isinstance(err, StorageError) and err.uploaded:
            failed["uploaded"] = [{"url": d.url, "key": d.key} for d in err.uploaded]
        return failed
    except Exception as err:  # the worker must survive anything a job does
        message = public_message(err, secrets_of(SETTINGS, s3_config))
        log.exception("job %s failed unexpectedly: %s", job_id, message)
        return {"error": message}


def concurrency_modifier(current: int) -> int:
    """Jobs this worker takes at once (ACESTEP_JOB_CONCURRENCY, default 2 here): one generating while the last
    one is encoded and uploaded. More lets compatible jobs render as one batch, but a job taken early waits inside
    the worker, against RunPod's execution timeout and hidden from the autoscaler's queue depth. None once the GPU
    is broken: RunPod is replacing this worker, and every job it took meanwhile would only fail."""
    if WORKER is not None and WORKER.fault:
        return 0
    if SERVICE is None:  # it can only say why it cannot serve: one job at a time, then RunPod refreshes it
        return 1
    return SETTINGS.worker_concurrency


if __name__ == "__main__":
    if LOAD_ERROR is not None and not RETRY_ELSEWHERE:  # a broken image: stop, saying why
        print(f"acestep-worker cannot start: {LOAD_ERROR}", file=sys.stderr)
        sys.exit(1)
    runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})
