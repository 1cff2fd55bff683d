"""Pod mode: the worker's own inference code in this process, behind a bounded queue.

Jobs run as on a RunPod worker (``inference.gpu_worker``): ``ACESTEP_JOB_CONCURRENCY`` tasks in flight, taken
in order; generation on one GPU thread, never on the event loop, so ``/health`` and ``/query_result`` stay
fast while a song is being made; compatible waiting tasks rendered as one batch; encoding and writing beside
the next generation. The model loads on its own thread: ``/health`` says ``starting`` (503) until a job can
really be served. Tasks still queued or running when the process stops are marked failed at the next start
(their callers are told to submit again); finished ones are read back from the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from api_shim.lora_routes import LoraDefaults
from api_shim.envelope import ApiError
from api_shim.models import DEFAULT_AVG_JOB_S, HealthData, QueryResultItem, ReleaseTaskData, StatsData
from api_shim.task_store import TaskStore
from api_shim.tasks import Task, success_items, unknown_task_item
from inference.errors import AceStepError, CheckpointError, InputError, UnsupportedError, public_message
from inference.contract import FormatInputResponse, GenerateRequest, ModelsResponse, parse_format_input_request
from inference.settings import Settings
from inference.delivery import LocalTarget, secrets_of

log = logging.getLogger("acestep.shim.local")


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings, store: TaskStore, service_factory=None):
        from inference.service import GenerationService

        self.settings = settings
        self.store = store
        self._service_factory = service_factory or GenerationService.start
        self.worker = None  # inference.gpu_worker.GpuWorker, once the model is loaded
        self.load_error: str | None = None
        self._live: dict[str, Task] = {}  # queued or running, by id
        self._waiting: list[str] = []  # queued ids in order
        self._waiting_bytes = 0  # audio input bytes the queued tasks hold (ACESTEP_QUEUE_MAX_BYTES)
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None  # tasks in flight; waiters are woken in order
        self._running: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._load, name="acestep-load", daemon=True)
        self._target = LocalTarget(settings.shim_audio_dir)
        self.lora_defaults = LoraDefaults()  # the server's adapters, set by /v1/lora/*

    # --- lifecycle ---
    async def start(self) -> None:
        for task in self.store.unfinished():  # left behind by a previous process
            task.fail("the server restarted before this task finished; submit it again")
            self.store.save(task)
        self._slots = asyncio.Semaphore(self.settings.pod_concurrency)
        self._thread.start()

    async def stop(self) -> None:
        for running in list(self._running):  # their tasks are marked failed at the next start
            running.cancel()

    def _load(self) -> None:
        from inference.gpu_worker import GpuWorker

        try:
            self.worker = GpuWorker(self._service_factory(self.settings))
            return
        except CheckpointError as err:
            self.load_error = str(err)
        except Exception as err:  # a broken install must show on /health, not kill the server
            log.exception("loading failed")
            self.load_error = public_message(err, secrets_of(self.settings))
        log.error("cannot serve: %s", self.load_error)

    async def _run(self, task: Task, request: GenerateRequest) -> None:
        async with self._slots:
            with self._lock:
                if task.task_id in self._waiting:
                    self._waiting.remove(task.task_id)
                    self._waiting_bytes -= request.audio_input_bytes
            await self._generate(task, request)

    async def _generate(self, task: Task, request: GenerateRequest) -> None:
        task.stage, task.started = "running", time.time()
        await asyncio.to_thread(self.store.save, task)

        def progress(fraction: float, stage: str) -> None:
            task.progress, task.stage = fraction, stage

        try:
            output = await self.worker.generate(request, task.task_id, progress=progress, target=self._target)
            data = output.model_dump()
            task.succeed(success_items(task, data, [a["path"] for a in data["audios"]]))
        except AceStepError as err:
            task.fail(public_message(err, secrets_of(self.settings)))
        except Exception as err:  # the server must survive anything a job does
            log.exception("task %s failed unexpectedly", task.task_id)
            task.fail(public_message(err, secrets_of(self.settings)))
        await asyncio.to_thread(self.store.save, task)
        with self._lock:
            self._live.pop(task.task_id, None)
        log.info("task %s %s in %.2f s", task.task_id, task.stage, task.finished - task.started)

    @property
    def service(self):
        """The loaded ``GenerationService``, or None while loading or after a failed load."""
        return self.worker.service if self.worker else None

    # --- the API ---
    def _require_ready(self):
        if self.worker is not None and self.worker.fault:
            raise ApiError(503, f"{self.worker.fault}; restart the server")
        if self.service is None:
            if self.load_error:
                raise ApiError(503, f"the model could not be loaded: {self.load_error}")
            raise ApiError(503, "the model is still loading; retry in a few seconds", headers={"Retry-After": "5"})
        return self.service

    async def health(self) -> HealthData:
        if self.worker is not None and self.worker.fault:  # a broken GPU: the server must be restarted
            return HealthData(status="unavailable", models_loaded=False, backend="local",
                              error=f"{self.worker.fault}; restart the server")
        if self.service is not None:
            service = self.service
            return HealthData(status="ok", models_loaded=True, backend="local", loaded_model=service.loaded.dit_model,
                              loaded_lm_model=service.lm_model, llm_initialized=service.lm_model is not None)
        if self.load_error:
            return HealthData(status="unavailable", models_loaded=False, backend="local", error=self.load_error)
        return HealthData(status="starting", models_loaded=False, backend="local")

    async def submit(self, body: dict[str, Any]) -> ReleaseTaskData:
        service = self._require_ready()
        try:  # base64 audio inputs can be tens of MB: decode them off the event loop
            request = await asyncio.to_thread(service.parse, body)
        except (InputError, UnsupportedError) as err:
            raise ApiError(400, str(err)) from None
        request = self.lora_defaults.apply(request)  # the server's adapters (/v1/lora/*) for a task naming none
        task = Task.new(request.prompt, request.lyrics)
        size, budget = request.audio_input_bytes, self.settings.queue_max_bytes
        with self._lock:
            if len(self._waiting) >= self.settings.queue_maxsize:
                raise ApiError(429, f"the queue is full ({self.settings.queue_maxsize} tasks waiting); retry later",
                               headers={"Retry-After": "10"})
            if self._waiting_bytes and self._waiting_bytes + size > budget:
                raise ApiError(429, f"the queue is full: waiting tasks hold {self._waiting_bytes} bytes of audio "
                                    f"inputs and this one brings {size}, over ACESTEP_QUEUE_MAX_BYTES ({budget}); "
                                    f"retry later", headers={"Retry-After": "10"})
            self._live[task.task_id] = task
            self._waiting.append(task.task_id)
            self._waiting_bytes += size
            task.queue_position = len(self._waiting)
        self.store.save(task)
        running = asyncio.create_task(self._run(task, request))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return ReleaseTaskData(task_id=task.task_id, queue_position=task.queue_position, warnings=request.warnings)

    async def query(self, task_ids: list[str]) -> list[QueryResultItem]:
        items = []
        for task_id in task_ids:
            with self._lock:
                task = self._live.get(task_id)
                if task is not None and task.task_id in self._waiting:
                    task.queue_position = self._waiting.index(task.task_id) + 1
            task = task or self.store.get(task_id)
            items.append(task.query_item() if task else unknown_task_item(task_id))
        return items

    async def models(self) -> ModelsResponse:
        return self._require_ready().models()

    async def format_input(self, body: dict[str, Any]) -> FormatInputResponse:
        service = self._require_ready()
        try:
            request = parse_format_input_request(body)
        except InputError as err:
            raise ApiError(400, str(err)) from None
        format_input = getattr(service, "format_input", None)
        if format_input is None:
            raise ApiError(501, "format_input needs the 5 Hz LM, which this server has not loaded (ACESTEP_LM_MODEL)")
        try:
            return await self.worker.on_gpu(format_input, request)
        except AceStepError as err:
            raise ApiError(400 if isinstance(err, InputError) else 501 if isinstance(err, UnsupportedError) else 500,
                           public_message(err, secrets_of(self.settings))) from None

    async def stats(self) -> StatsData:
        counts, mean = self.store.counts()
        return StatsData(jobs=counts, queue_size=len(self._waiting), queue_maxsize=self.settings.queue_maxsize,
                         avg_job_seconds=DEFAULT_AVG_JOB_S if mean is None else mean)
