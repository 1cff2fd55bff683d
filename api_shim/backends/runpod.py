"""The shim in front of a RunPod serverless endpoint running ``handler.py``.

``release_task`` → ``POST /v2/{id}/run``; ``query_result`` → ``GET /v2/{id}/status/{job}``, with every
finished result kept in the task store (RunPod forgets jobs after 30 minutes); ``format_input`` and
``/v1/models`` → ``runsync`` jobs with an ``action``. Audio the worker put in a bucket is recorded under a
local-looking path so the ``file`` field keeps its upstream form; ``/v1/audio`` streams it from the bucket.
Inline (base64) audio is written to the shim's output folder and served from there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
import uuid
from typing import Any

from api_shim.envelope import ApiError
from api_shim.models import HealthData, QueryResultItem, ReleaseTaskData, StatsData
from api_shim.runpod_client import FINAL_STATES, RunPodClient, RunPodError
from api_shim.task_store import TaskStore
from api_shim.tasks import Task, success_items, unknown_task_item
from inference.errors import InputError, UnsupportedError
from inference.schema import (
    CONTENT_TYPES,
    FormatInputResponse,
    Limits,
    ModelsResponse,
    parse_format_input_request,
    parse_generate_request,
)
from inference.settings import Settings
from inference.storage import write_bytes_atomically

log = logging.getLogger("acestep.shim.runpod")
HEALTH_CACHE_S = 5.0
MODELS_CACHE_S = 60.0
SYNC_TIMEOUT_S = 300.0
STATUS_MIN_INTERVAL_S = 1.0  # however often clients poll, RunPod is asked at most once a second per task


class RunPodBackend:
    name = "runpod"

    def __init__(self, settings: Settings, store: TaskStore):
        if not (settings.runpod_endpoint_id and settings.runpod_api_key):
            raise ValueError("the runpod backend needs RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY")
        self.settings = settings
        self.store = store
        self.client = RunPodClient(settings.runpod_base_url, settings.runpod_endpoint_id,
                                   settings.runpod_api_key.get_secret_value(), settings.runpod_attempts,
                                   settings.runpod_backoff_s)
        self.output_dir = settings.shim_output_dir
        self._health: tuple[float, HealthData] | None = None
        self._models: tuple[float, ModelsResponse] | None = None
        self._refreshing: dict[str, asyncio.Task] = {}
        self._refreshed_at: dict[str, float] = {}

    async def start(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        await self.client.close()

    # --- health and models ---
    async def health(self) -> HealthData:
        if self._health and time.monotonic() - self._health[0] < HEALTH_CACHE_S:
            return self._health[1]
        try:
            await self.client.health()
            data = HealthData(status="ok", models_loaded=True, backend="runpod")
        except RunPodError as err:
            data = HealthData(status="unavailable", models_loaded=False, backend="runpod", error=err.message)
        self._health = (time.monotonic(), data)
        return data

    async def models(self) -> ModelsResponse:
        if self._models and time.monotonic() - self._models[0] < MODELS_CACHE_S:
            return self._models[1]
        output = await self._sync_job({"action": "models"})
        models = ModelsResponse.model_validate(output)
        self._models = (time.monotonic(), models)
        return models

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
                    raise ApiError(504, f"the RunPod worker did not answer within {SYNC_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.5)
                state = await self.client.status(state["id"])
        except RunPodError as err:
            raise ApiError(502, err.message) from None
        error = _job_error(state)
        if error:
            raise ApiError(502, f"the RunPod worker failed: {error}")
        output = state.get("output")
        if not isinstance(output, dict):
            raise ApiError(502, "the RunPod worker returned no output")
        return output

    # --- tasks ---
    async def submit(self, body: dict[str, Any]) -> ReleaseTaskData:
        try:  # the worker checks its own GPU's limits; the contract's are checked here, before any cost
            request = await asyncio.to_thread(parse_generate_request, body, Limits())
        except (InputError, UnsupportedError) as err:
            raise ApiError(400, str(err)) from None
        counts, _ = self.store.counts()
        waiting = counts.queued + counts.running
        if waiting >= self.settings.queue_maxsize:
            raise ApiError(429, f"{waiting} tasks are already waiting (ACESTEP_QUEUE_MAXSIZE "
                                f"{self.settings.queue_maxsize}); retry later", headers={"Retry-After": "10"})
        try:
            job = await self.client.run(_job_input(body))
        except RunPodError as err:
            raise ApiError(502, err.message) from None
        task = Task.new(request.prompt, request.lyrics)
        task.remote_id = str(job.get("id", ""))
        task.queue_position = waiting + 1
        self.store.save(task)
        log.info("task %s is RunPod job %s", task.task_id, task.remote_id)
        return ReleaseTaskData(task_id=task.task_id, queue_position=task.queue_position, warnings=request.warnings)

    async def query(self, task_ids: list[str]) -> list[QueryResultItem]:
        tasks = [self.store.get(task_id) for task_id in task_ids]
        await asyncio.gather(*(self._refresh(t) for t in tasks if t is not None and not t.done))
        return [(self.store.get(t.task_id) or t).query_item() if t else unknown_task_item(i)
                for i, t in zip(task_ids, tasks)]

    async def _refresh(self, task: Task) -> None:
        """One status call per task at a time, however many clients poll it."""
        running = self._refreshing.get(task.task_id)
        if running is None and time.monotonic() - self._refreshed_at.get(task.task_id, 0.0) < STATUS_MIN_INTERVAL_S:
            return
        if running is None:
            running = asyncio.ensure_future(self._refresh_once(task))
            self._refreshing[task.task_id] = running
            running.add_done_callback(lambda _: self._refreshing.pop(task.task_id, None))
        await asyncio.shield(running)

    async def _refresh_once(self, task: Task) -> None:
        self._refreshed_at[task.task_id] = time.monotonic()
        try:
            state = await self.client.status(task.remote_id or "")
        except RunPodError as err:
            if err.status == 404:
                task.fail(f"RunPod no longer knows job {task.remote_id} (it keeps results for 30 minutes)")
                self.store.save(task)
            else:
                log.warning("status of task %s: %s", task.task_id, err.message)
            return
        status = state.get("status")
        output = state.get("output")
        if status == "IN_QUEUE":
            task.stage = "queued"
        elif status == "IN_PROGRESS":
            task.started = task.started or time.time()
            if isinstance(output, dict):
                task.progress = float(output.get("progress", task.progress) or 0.0)
                task.stage = str(output.get("stage") or "running")
            else:
                task.stage = "running"
        elif status == "COMPLETED" and not _job_error(state) and isinstance(output, dict) and output.get("audios"):
            try:
                paths = await asyncio.to_thread(self._keep_audio, task, output["audios"])
            except ValueError as err:
                task.fail(str(err))
            else:
                task.succeed(success_items(task, output, paths))
        elif status in FINAL_STATES:
            task.fail(_job_error(state) or f"the RunPod job ended {str(status).lower()} without audio")
        if task.done:
            self._refreshed_at.pop(task.task_id, None)
        self.store.save(task)

    def _keep_audio(self, task: Task, audios: list[dict[str, Any]]) -> list[str]:
        paths = []
        for audio in audios:
            extension = str(audio.get("format", "mp3"))
            if extension not in CONTENT_TYPES:
                raise ValueError(f"the worker returned audio in an unknown format {extension!r}")
            if audio.get("url"):
                path = os.path.realpath(self.output_dir / "remote" / f"{uuid.uuid4().hex}.{extension}")
                self.store.add_remote_audio(path, audio["url"], CONTENT_TYPES[extension], task.task_id)
            elif audio.get("base64"):
                try:
                    data = base64.b64decode(audio["base64"], validate=True)
                except (binascii.Error, ValueError):
                    raise ValueError("the worker returned audio that is not valid base64") from None
                path = os.path.realpath(write_bytes_atomically(self.output_dir, data, extension))
            elif audio.get("path"):
                path = os.path.realpath(audio["path"])  # a volume shared with the worker
            else:
                raise ValueError("the worker returned an audio without url, base64 or path")
            paths.append(path)
        return paths

    async def stats(self) -> StatsData:
        counts, mean = self.store.counts()
        return StatsData(jobs=counts, queue_size=counts.queued, queue_maxsize=self.settings.queue_maxsize,
                         avg_job_seconds=mean)


def _job_input(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "ai_token"}  # the shim's key is not the worker's business


def _job_error(state: dict[str, Any]) -> str | None:
    """The reason a RunPod job failed, as one line: our handler's message, or the SDK's error record."""
    error = state.get("error")
    output = state.get("output")
    if not error and isinstance(output, dict):
        error = output.get("error")
    if not error:
        return None
    if isinstance(error, str):
        try:
            record = json.loads(error)
            if isinstance(record, dict) and record.get("error_message"):
                error = f"{record.get('error_type', 'error')}: {record['error_message']}"
        except json.JSONDecodeError:
            pass
    return " ".join(str(error).split())[:500]
