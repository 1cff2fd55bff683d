"""The shim in front of a RunPod serverless endpoint running ``handler.py``.

``release_task`` → ``POST /v2/{id}/run`` (sent again only when RunPod provably did not take it, see
``api_shim.runpod_client``); the job's progress and result are followed in the background
(``api_shim.backends.runpod_tracker``), so ``query_result`` answers from the task store without calling
RunPod, and every result is kept however long RunPod remembers it. ``format_input`` is a ``runsync`` job with
an ``action`` (it needs the LM on the GPU); ``/v1/models`` is answered here without waking a worker: from the
models the endpoint's finished jobs reported, or before any, from this shim's own ``ACESTEP_DIT_MODEL`` /
``ACESTEP_LM_MODEL``. Audio the worker put in a bucket is recorded under a local-looking path so the
``file`` field keeps its upstream form; ``/v1/audio`` streams it from the bucket. Inline (base64) audio is
written to the shim's output folder and served from there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from api_shim.envelope import ApiError
from api_shim.requests_in import RUNPOD_PAYLOAD_BYTES
from api_shim.models import DEFAULT_AVG_JOB_S, HealthData, QueryResultItem, ReleaseTaskData, StatsData
from api_shim.backends.runpod_staging import (
    STAGED_KEY,
    URL_ROOM_BYTES,
    planned_keys,
    remove_staged,
    staging_bucket,
    upload_inputs,
    without_audio_inputs,
)
from api_shim.backends.runpod_tracker import Tracker
from api_shim.runpod_client import FINAL_STATES, RunPodClient, RunPodError, job_error
from api_shim.task_store import TaskStore
from api_shim.tasks import Task, unknown_task_item
from inference.delivery.buckets import s3_reason
from inference.errors import InputError, UnsupportedError
from inference.model_catalog import describe_models
from inference.contract import (
    ANY_DEPLOYMENT,
    FormatInputResponse,
    Limits,
    ModelsResponse,
    parse_format_input_request,
    parse_generate_request,
)
from inference.settings import Settings

log = logging.getLogger("acestep.shim.runpod")
HEALTH_CACHE_S = 5.0
SYNC_TIMEOUT_S = 300.0
MODELS_KEY = "models"
LIMITS_KEY = "limits"
LIMITS_FRESH_S = 3600.0  # a redeployed endpoint (another model, another GPU) is not held to its old limits longer


class RunPodBackend:
    name = "runpod"

    def __init__(self, settings: Settings, store: TaskStore):
        if not (settings.runpod_endpoint_id and settings.runpod_api_key):
            raise ValueError("the runpod backend needs RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY")
        self.settings = settings
        self.store = store
        self.client = RunPodClient(settings.runpod_base_url, settings.runpod_endpoint_id,
                                   settings.runpod_api_key.get_secret_value(), settings.runpod_attempts,
                                   settings.runpod_backoff_s, settings.runpod_timeout_s)
        self.output_dir = settings.shim_audio_dir
        self.tracker: Tracker | None = None
        self._health: tuple[float, HealthData] | None = None
        self._submitting = 0  # release_task calls between the queue check and the job's creation
        self.staging = staging_bucket(settings)  # where audio inputs too big for a job's payload go

    async def start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.tracker = Tracker(self.client, self.store, self.output_dir, self.settings.task_timeout_s,
                               on_output=self._learn_models, on_done=self._release_staged)
        self.tracker.start()
        await asyncio.to_thread(self._sweep_staged)

    async def stop(self) -> None:
        if self.tracker:
            await self.tracker.stop()
        await self.client.close()

    # --- health and models ---
    async def health(self) -> HealthData:
        if self._health and time.monotonic() - self._health[0] < HEALTH_CACHE_S:
            return self._health[1]
        try:
            await self.client.health()
            models = await self.models()
            data = HealthData(status="ok", models_loaded=True, backend="runpod", loaded_model=models.default_model,
                              loaded_lm_model=models.loaded_lm_model, llm_initialized=models.llm_initialized)
        except RunPodError as err:
            data = HealthData(status="unavailable", models_loaded=False, backend="runpod", error=err.message)
        self._health = (time.monotonic(), data)
        return data

    async def models(self) -> ModelsResponse:
        """What the endpoint's last finished job reported; before any, a statement from this shim's settings (the
        same variables the worker reads: with ACESTEP_LM_MODEL unset the worker may still load its tier's LM)."""
        learned = await asyncio.to_thread(self.store.get_value, MODELS_KEY)
        if learned:
            return ModelsResponse.model_validate(learned)
        lm = self.settings.lm_model if self.settings.lm_model and self.settings.lm_model.lower() != "none" else None
        return describe_models(self.settings.dit_name, lm)

    def _learn_models(self, output: dict[str, Any]) -> None:
        """A finished job names the DiT and LM its worker runs and what it allows: /v1/models reports those, and
        submissions are checked against those limits, from then on (kept in the store across restarts)."""
        limits = None
        try:
            limits = Limits.model_validate(output["limits"]) if isinstance(output.get("limits"), dict) else None
        except ValueError:
            log.warning("the worker reported limits this shim cannot read; ignored")
        if limits is not None:
            self.store.set_value(LIMITS_KEY, {"at": time.time(), "limits": limits.model_dump()})
        dit = output.get("dit_model")
        if isinstance(dit, str) and dit:
            lm = output.get("lm_model") if isinstance(output.get("lm_model"), str) else None
            self.store.set_value(MODELS_KEY, describe_models(dit, lm or None,
                                                             limits.is_turbo if limits else None).model_dump())

    async def _limits(self) -> Limits:
        """The endpoint's workers' limits once a job has reported them; until then the widest any deployment has
        (the worker refuses, with the reason, what its own GPU cannot do)."""
        known = await asyncio.to_thread(self.store.get_value, LIMITS_KEY)
        try:
            fresh = isinstance(known, dict) and time.time() - float(known["at"]) < LIMITS_FRESH_S
            return Limits.model_validate(known["limits"]) if fresh else ANY_DEPLOYMENT
        except (KeyError, TypeError, ValueError):
            return ANY_DEPLOYMENT

    async def format_input(self, body: dict[str, Any]) -> FormatInputResponse:
        try:
            parse_format_input_request(body)  # bad input is answered here, without a GPU round trip
        except InputError as err:
            raise ApiError(400, str(err)) from None
        output = await self._sync_job({**_job_input(body), "action": "format_input"})
        return FormatInputResponse.model_validate(output)

    async def _sync_job(self, job_input: dict[str, Any]) -> dict[str, Any]:
        try:
            state = await self.client.runsync(job_input)
            deadline = time.monotonic() + SYNC_TIMEOUT_S
            while state.get("status") not in FINAL_STATES:
                if time.monotonic() > deadline:
                    await self._cancel_quietly(str(state.get("id", "")))
                    raise ApiError(504, f"the RunPod worker did not answer within {SYNC_TIMEOUT_S:.0f} s; the job "
                                        f"was cancelled")
                await asyncio.sleep(0.5)
                state = await self.client.status(state["id"])
        except RunPodError as err:
            raise ApiError(504 if err.status == 504 else 502, err.message) from None
        error = job_error(state)
        if error:
            raise ApiError(502, f"the RunPod worker failed: {error}")
        output = state.get("output")
        if not isinstance(output, dict):
            raise ApiError(502, "the RunPod worker returned no output")
        return output

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await self.client.cancel(job_id)
        except RunPodError as err:
            log.warning("cancelling RunPod job %s failed: %s", job_id, err.message)

    # --- tasks ---
    async def submit(self, body: dict[str, Any]) -> ReleaseTaskData:
        try:  # the worker checks its own GPU's limits; the contract's are checked here, before any cost
            request = await asyncio.to_thread(parse_generate_request, body, await self._limits())
        except (InputError, UnsupportedError) as err:
            raise ApiError(400, str(err)) from None
        waiting = len(self.tracker.live) + self._submitting
        if waiting >= self.settings.queue_maxsize:
            raise ApiError(429, f"{waiting} tasks are already waiting (ACESTEP_QUEUE_MAXSIZE "
                                f"{self.settings.queue_maxsize}); retry later", headers={"Retry-After": "10"})
        task = Task.new(request.prompt, request.lyrics)
        self._submitting += 1  # a place held while RunPod is asked, so concurrent submits cannot overfill
        staged: list[str] = []
        try:
            job_input, staged = await self._fitted(request, _job_input(body), task)
            job = await self.client.run(job_input)
        except RunPodError as err:
            await asyncio.to_thread(self._forget_staged, task.task_id, staged)
            raise ApiError(504 if err.status == 504 else 502, err.message) from None
        finally:
            self._submitting -= 1
        task.remote_id = str(job.get("id", ""))
        task.queue_position = waiting + 1
        self.tracker.track(task)  # followed from now on, even if saving it below is cut short
        await asyncio.to_thread(self.store.save, task)
        log.info("task %s is RunPod job %s", task.task_id, task.remote_id)
        return ReleaseTaskData(task_id=task.task_id, queue_position=task.queue_position, warnings=request.warnings)

    async def _fitted(self, request, job_input: dict[str, Any], task: Task) -> tuple[dict[str, Any], list[str]]:
        """The job input within RunPod's payload limit: as it came, or with its audio inputs staged in the bucket
        (``api_shim.backends.runpod_staging``); else 413."""
        limit, path = RUNPOD_PAYLOAD_BYTES["release_task"]
        size = len(json.dumps({"input": job_input}))
        if size <= limit:
            return job_input, []
        over = f"over RunPod's {path} payload limit ({limit} bytes)"
        if not request.audio_input_bytes:
            raise ApiError(413, f"the job is {size} bytes, {over}; it carries no audio input, so its other fields "
                                f"(unknown ones are forwarded too) make it so")
        if self.staging is None:
            raise ApiError(413, f"the job with its audio inputs is {size} bytes, {over}; send a shorter or "
                                f"compressed (mp3, opus) audio input, give it by URL (src_audio_url), or configure "
                                f"BUCKET_* on this shim to pass it through a bucket")
        rest = without_audio_inputs(job_input)
        rest_size = len(json.dumps({"input": rest})) + URL_ROOM_BYTES
        if rest_size > limit:  # nothing is uploaded for a job that would not fit anyway
            raise ApiError(413, f"the job without its audio inputs is about {rest_size} bytes, {over}; its other "
                                f"fields (unknown ones are forwarded too) make it so")
        keys = planned_keys(request, self.staging, task.task_id)
        await asyncio.to_thread(self.store.set_value, STAGED_KEY.format(task.task_id), list(keys.values()))
        try:
            urls = await asyncio.to_thread(upload_inputs, request, self.staging, keys, self.settings.task_timeout_s)
        except Exception as err:  # noqa: BLE001 - boto3's errors; no secret, path or bucket name in the message
            log.warning("staging the audio inputs of task %s in bucket '%s' failed: %s", task.task_id,
                        self.staging.bucket, s3_reason(err))
            await asyncio.to_thread(self._forget_staged, task.task_id, list(keys.values()))
            raise ApiError(502, f"passing the audio inputs through this shim's bucket failed ({s3_reason(err)}); "
                                f"retry, or give them by URL") from None
        return {**rest, **urls}, list(keys.values())

    def _forget_staged(self, task_id: str, keys: list[str]) -> None:
        """Delete a task's staged inputs; those that could not be deleted stay on record for the next start."""
        failed = remove_staged(self.staging, keys) if self.staging is not None else list(keys)
        if failed:
            self.store.set_value(STAGED_KEY.format(task_id), failed)
        else:
            self.store.delete_value(STAGED_KEY.format(task_id))

    def _release_staged(self, task: Task) -> None:
        """A task ended: the copies of its audio inputs in the bucket are no longer needed."""
        keys = self.store.get_value(STAGED_KEY.format(task.task_id))
        if keys:
            self._forget_staged(task.task_id, list(keys))

    def _sweep_staged(self) -> None:
        """Staged inputs of tasks that ended while no shim was running to remove them."""
        for key, keys in self.store.values_under(STAGED_KEY.format("")).items():
            task = self.store.get(key.split(":", 1)[1])
            if task is None or task.done:
                self._forget_staged(key.split(":", 1)[1], list(keys or []))

    async def query(self, task_ids: list[str]) -> list[QueryResultItem]:
        """From the store: the tracker keeps it current, so however many ids are asked, RunPod is not called."""
        items = []
        for task_id in task_ids:
            task = self.tracker.get(task_id)
            items.append(task.query_item() if task else unknown_task_item(task_id))
        return items

    async def stats(self) -> StatsData:
        counts, mean = self.store.counts()
        return StatsData(jobs=counts, queue_size=counts.queued, queue_maxsize=self.settings.queue_maxsize,
                         avg_job_seconds=DEFAULT_AVG_JOB_S if mean is None else mean)


def _job_input(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "ai_token"}  # the shim's key is not the worker's business
