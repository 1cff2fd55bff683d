"""Keeping the runpod backend's tasks moving without any client: RunPod's job states polled in the background.

Each unfinished task has its own schedule: asked about at most once a second while it runs and every few
seconds while it is queued, at most ``STATUS_CONCURRENCY`` calls in flight for all tasks together, however
many clients poll ``/query_result`` and however often (they are answered from the store). A slow answer about
one task holds up no other. A new state is applied to a copy of the task and becomes the live one only once
it is saved, so what a poll sees is always what a restart would find; a finished result is stored the moment
it is seen, well inside the 30 minutes RunPod keeps it.

A task ends without a result only for a stated reason: RunPod answered three times in a row that it does not
know the job; or the task is still unfinished at RunPod ``ACESTEP_TASK_TIMEOUT`` after it was submitted (it is
then cancelled there: no worker takes it up and bills it later); or RunPod could not be asked for so long that
it has forgotten the job anyway. Tasks left unfinished by a previous process are picked up again at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api_shim.backends.runpod_results import apply_state
from api_shim.models import SUCCEEDED
from api_shim.runpod_client import FINAL_STATES, RunPodClient, RunPodError
from api_shim.task_store import TaskStore
from api_shim.tasks import Task

log = logging.getLogger("acestep.shim.runpod")
TICK_S = 0.25
RUNNING_INTERVAL_S = 1.0  # however often clients poll, RunPod is asked at most once a second per task
QUEUED_INTERVAL_S = 3.0
STATUS_CONCURRENCY = 8  # /status calls in flight at once, all tasks together
STATUS_ATTEMPTS = 2  # per background check: the next check is the retry
NOT_FOUND_CONFIRMATIONS = 3
RUNPOD_KEEPS_S = 1800  # RunPod forgets a job's result 30 minutes after it ends


class Tracker:
    def __init__(self, client: RunPodClient, store: TaskStore, output_dir: Path, timeout_s: float,
                 on_output: Callable[[dict[str, Any]], None] | None = None,
                 on_done: Callable[[Task], None] | None = None):
        self.client = client
        self.store = store
        self.output_dir = output_dir
        self.timeout_s = timeout_s
        self.on_output = on_output  # told about every successful job's output (the models it names)
        self.on_done = on_done  # told, off the event loop, about every task that ended (its staged inputs go)
        self.live: dict[str, Task] = {}
        self._due: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._checks: set[asyncio.Task] = set()
        self._not_found: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(STATUS_CONCURRENCY)
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        for task in self.store.unfinished():  # left by a previous process: RunPod may still have them
            self.live[task.task_id] = task
        self._loop_task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        running = [t for t in (self._loop_task, *self._checks) if t is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def track(self, task: Task) -> None:
        self.live[task.task_id] = task
        self._due[task.task_id] = time.monotonic() + RUNNING_INTERVAL_S

    def get(self, task_id: str) -> Task | None:
        return self.live.get(task_id) or self.store.get(task_id)

    async def _forever(self) -> None:
        while True:
            now = time.monotonic()
            for task_id in list(self.live):
                if task_id not in self._in_flight and self._due.get(task_id, 0.0) <= now:
                    self._in_flight.add(task_id)
                    check = asyncio.create_task(self._check(task_id))
                    self._checks.add(check)
                    check.add_done_callback(self._checks.discard)
            await asyncio.sleep(TICK_S)

    async def _check(self, task_id: str) -> None:
        task = self.live.get(task_id)
        updated = None
        try:
            if task is not None:
                async with self._slots:
                    updated = await self._updated(task)
        except Exception:  # noqa: BLE001 - one task's trouble must not stop the others; it is tried again
            log.exception("checking task %s failed; trying again", task_id)
        finally:
            self._in_flight.discard(task_id)
        if updated is not None and updated.done:
            self.live.pop(task_id, None)
            self._due.pop(task_id, None)
            self._not_found.pop(task_id, None)
            if self.on_done:  # outside the status slots: tidying up holds up no poll
                try:
                    await asyncio.to_thread(self.on_done, updated)
                except Exception:  # noqa: BLE001 - tidying up after a task never changes its outcome
                    log.exception("tidying up after task %s failed", task_id)
        elif task_id in self.live:
            current = self.live[task_id]
            interval = QUEUED_INTERVAL_S if current.stage == "queued" else RUNNING_INTERVAL_S
            self._due[task_id] = time.monotonic() + interval

    async def _updated(self, task: Task) -> Task | None:
        """The task after one look at RunPod, saved; None when nothing could be learned this time."""
        new = dataclasses.replace(task)
        age = time.time() - task.created
        state: dict[str, Any] | None = None
        try:
            state = await self.client.status(task.remote_id or "", attempts=STATUS_ATTEMPTS)
        except RunPodError as err:
            if err.status == 404:
                self._not_found[task.task_id] += 1
                if self._not_found[task.task_id] < NOT_FOUND_CONFIRMATIONS:
                    return None
                new.fail(f"RunPod no longer knows job {task.remote_id} (it keeps results for 30 minutes)")
            elif age > self.timeout_s + RUNPOD_KEEPS_S:
                new.fail(f"RunPod could not be asked about this task for {age:.0f} s, longer than it keeps a result "
                         f"({err.message})")
            else:
                log.warning("status of task %s: %s", task.task_id, err.message)
                return None
        else:
            self._not_found.pop(task.task_id, None)
            await asyncio.to_thread(apply_state, new, state, self.store, self.output_dir)
            if not new.done and state.get("status") not in FINAL_STATES and age > self.timeout_s:
                new.fail(await self._cancelled(task))
        if dataclasses.asdict(new) != dataclasses.asdict(task):
            await asyncio.to_thread(self.store.save, new)
        if task.task_id in self.live:
            self.live[task.task_id] = new
        if new.status == SUCCEEDED and self.on_output and state is not None:
            try:
                self.on_output(state["output"])
            except Exception:  # noqa: BLE001 - what it learns is a nicety; the result is already saved
                log.exception("noting the models of task %s failed", task.task_id)
        if new.done and new.error:
            log.warning("task %s failed: %s", task.task_id, new.error)
        return new

    async def _cancelled(self, task: Task) -> str:
        """Cancel an overdue task's job at RunPod; the reason the task fails."""
        try:
            await self.client.cancel(task.remote_id or "")
            cancelled = "; its RunPod job was cancelled"
        except RunPodError as err:
            cancelled = f"; cancelling its RunPod job failed ({err.message})"
        return f"the task did not finish within {self.timeout_s:.0f} s (ACESTEP_TASK_TIMEOUT){cancelled}"
