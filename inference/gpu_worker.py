"""One model on one accelerator, many jobs in flight: the GPU thread, the delivery threads and the batcher.

Shared by the RunPod handler and the HTTP shim's pod mode. A job is admitted (validated, its audio inputs
decoded) on the admission thread, in order and one file at a time; then it is planned by the LM and rendered
(DiT and VAE) on the one GPU thread, so two generations never run at once and the GPU thread never decodes a
file. Compatible jobs waiting for it render as one batch (``inference.batching``); encoding and upload run on
delivery threads, so the GPU renders the next batch meanwhile. Callers bound how many jobs they keep in flight
(RunPod's ``concurrency_modifier``, the shim's slots).

Everything that runs on the GPU thread is guarded: after a fatal accelerator error (``inference.accelerator_faults``)
the worker is ``faulted`` and refuses every later job at once with that reason, without touching the GPU, so its
callers can replace it (RunPod's ``refresh_worker``; the shim's ``/health``). A job whose caller stops waiting
(cancelled) is dropped from the batch queue, and a render whose jobs have all been cancelled stops at its next step.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inference.accelerator_faults import AcceleratorFault, fault_message, is_fatal
from inference.batching import Batcher
from inference.run import ProgressFn
from inference.contract import GenerateResponse
from inference.service import GenerationService, Rendered, Staged
from inference.delivery import Target

DELIVERY_THREADS = 4
log = logging.getLogger("acestep.gpu")


class GpuWorker:
    def __init__(self, service: GenerationService):
        self.service = service
        self.gpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acestep-gpu")
        self.admission = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acestep-admit")
        self.delivery = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="acestep-delivery")
        self.fault: str | None = None  # set once by a fatal accelerator error; the worker then serves no job
        self.batcher: Batcher[Staged, Rendered] = Batcher(
            self.gpu, functools.partial(self._guarded, service.render_batch), key=service.batch_key,
            size=service.batch_size, max_size=service.loaded.limits.max_batch_size)

    def _guarded(self, fn, *args, **kwargs):
        """``fn`` on the GPU thread, unless the GPU is already known to be broken; a fatal error breaks it."""
        if self.fault:
            raise AcceleratorFault(self.fault)
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not is_fatal(err):
                raise
            self.fault = fault_message(err)
            log.critical("fatal accelerator error, this worker serves no more jobs: %s", err)
            raise AcceleratorFault(self.fault) from None

    async def on_gpu(self, fn, *args, **kwargs):
        """Run ``fn`` on the GPU thread, in turn with generations (the LM's format_input, for one)."""
        if self.fault:
            raise AcceleratorFault(self.fault)
        return await asyncio.get_running_loop().run_in_executor(
            self.gpu, functools.partial(self._guarded, fn, *args, **kwargs))

    async def generate(self, job_input: Any, job_id: str, s3_config: Any = None, progress: ProgressFn | None = None,
                       target: Target | None = None) -> GenerateResponse:
        if self.fault:  # before any work: a broken GPU would fail this job after its admission
            raise AcceleratorFault(self.fault)
        staged = await asyncio.get_running_loop().run_in_executor(self.admission, functools.partial(
            self.service.admit, job_input, job_id, s3_config, progress, target))
        try:
            rendered = await self.batcher.submit(await self.on_gpu(self.service.plan, staged))
        except asyncio.CancelledError:
            staged.cancelled.set()  # a render of only cancelled jobs stops at its next step
            raise
        del staged  # its decoded audio inputs are not needed to deliver
        return await asyncio.get_running_loop().run_in_executor(
            self.delivery, self.service.deliver, rendered, progress)
