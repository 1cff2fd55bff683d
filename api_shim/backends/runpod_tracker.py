"""Keeping the runpod backend's tasks moving without any client: RunPod's job states polled in the background.

Every unfinished task is asked about at most once a second while it runs and every few seconds while it is
queued, a bounded number of calls at a time, whoever polls ``/query_result`` and however often. A finished
result is stored the moment it is seen (its inline audio written to the output folder), well inside the 30
minutes RunPod keeps it. A task RunPod no longer knows fails with that reason; one still unfinished after
``ACESTEP_TASK_TIMEOUT`` is cancelled at RunPod and fails with that reason, so nothing stays "running" forever
or holds a place in the queue. Tasks left unfinished by a previous process are picked up again at start.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api_shim.runpod_client import FINAL_STATES, RunPodClient, RunPodError
from api_shim.task_store import TaskStore
from api_shim.tasks import Task, success_items
from inference.delivery import write_bytes_atomically
from inference.schema import CONTENT_TYPES

log = logging.getLogger("acestep.shim.runpod")
TICK_S = 0.25
RUNNING_INTERVAL_S = 1.0  # however often clients poll, RunPod is asked at most once a second per task
QUEUED_INTERVAL_S = 3.0
STATUS_CONCURRENCY = 8  # /status calls in flight at once, all tasks together


class Tracker:
    def __init__(self, client: RunPodClient, store: TaskStore, output_dir: Path, timeout_s: float,
                 on_output: Callable[[dict[str, Any]], None] | None = None):
        self.client = client
        self.store = store
        self.output_dir = output_dir
        self.timeout_s = timeout_s
        self.on_output = on_output  # told about every successful job's output (the models it names)
        self.live: dict[str, Task] = {}
        self._due: dict[str, float] = {}
        self._slots = asyncio.Semaphore(STATUS_CONCURRENCY)
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        for task in self.store.unfinished():  # left by a previous process: RunPod may still have them
            self.live[task.task_id] = task
        self._loop_task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    def track(self, task: Task) -> None:
        self.live[task.task_id] = task
        self._due[task.task_id] = time.monotonic() + RUNNING_INTERVAL_S

    def get(self, task_id: str) -> Task | None:
        return self.live.get(task_id) or self.store.get(task_id)

    async def _forever(self) -> None:
        while True:
            now = time.monotonic()
            due = [t for t in list(self.live.values()) if self._due.get(t.task_id, 0.0) <= now]
            if due:
                await asyncio.gather(*(self._check(t) for t in due))
            await asyncio.sleep(TICK_S)

    async def _check(self, task: Task) -> None:
        async with self._slots:
            try:
                if time.time() - task.created > self.timeout_s:
                    await self._expire(task)
                else:
                    await self.refresh(task)
            except Exception:  # noqa: BLE001 - one task's trouble must not stop the others
                log.exception("checking task %s failed", task.task_id)
        if task.done:
            self.live.pop(task.task_id, None)
            self._due.pop(task.task_id, None)
        else:
            interval = QUEUED_INTERVAL_S if task.stage == "queued" else RUNNING_INTERVAL_S
            self._due[task.task_id] = time.monotonic() + interval

    async def _expire(self, task: Task) -> None:
        try:
            await self.client.cancel(task.remote_id or "")
            cancelled = "; its RunPod job was cancelled"
        except RunPodError as err:
            cancelled = f"; cancelling its RunPod job failed ({err.message})"
        task.fail(f"the task did not finish within {self.timeout_s:.0f} s (ACESTEP_TASK_TIMEOUT){cancelled}")
        await asyncio.to_thread(self.store.save, task)
        log.warning("task %s expired: %s", task.task_id, task.error)

    async def refresh(self, task: Task) -> None:
        try:
            state = await self.client.status(task.remote_id or "")
        except RunPodError as err:
            if err.status == 404:
                task.fail(f"RunPod no longer knows job {task.remote_id} (it keeps results for 30 minutes)")
                await asyncio.to_thread(self.store.save, task)
            else:
                log.warning("status of task %s: %s", task.task_id, err.message)
            return
        status, output = state.get("status"), state.get("output")
        if status == "IN_QUEUE":
            task.stage = "queued"
        elif status == "IN_PROGRESS":
            task.started = task.started or time.time()
            if isinstance(output, dict):
                task.progress = float(output.get("progress", task.progress) or 0.0)
                task.stage = str(output.get("stage") or "running")
            else:
                task.stage = "running"
        elif status == "COMPLETED" and not job_error(state) and isinstance(output, dict) and output.get("audios"):
            try:
                paths = await asyncio.to_thread(self._keep_audio, task, output["audios"])
            except ValueError as err:
                task.fail(str(err))
            else:
                task.succeed(success_items(task, output, paths))
                if self.on_output:
                    self.on_output(output)
        elif status in FINAL_STATES:
            task.fail(job_error(state) or f"the RunPod job ended {str(status).lower()} without audio")
        await asyncio.to_thread(self.store.save, task)

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


def job_error(state: dict[str, Any]) -> str | None:
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
