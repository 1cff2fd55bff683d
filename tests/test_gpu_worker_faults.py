"""The GPU thread under faults, on the tiny real pipeline: a broken GPU stops the worker taking jobs (RunPod's
``refresh_worker``, through the SDK's own job runner), a cancelled job is not rendered for nobody, an LM out of
memory is a friendly error, and the optional default LM failing to load does not fail the cold start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest
import torch

from inference import run
from inference.accelerator_faults import AcceleratorFault
from inference.errors import CheckpointError, GenerationError
from inference.gpu_worker import GpuWorker
from inference.lm.load import load_lm
from inference.service import GenerationService
from inference.settings import Settings
from tests.conftest import LM, ROOT, worker_env

SONG = {"prompt": "x", "lyrics": "[inst]", "audio_duration": 10, "inference_steps": 2, "batch_size": 1,
        "audio_format": "wav"}


@pytest.fixture
def worker(loaded, settings):
    gpu_worker = GpuWorker(GenerationService(loaded, settings))
    yield gpu_worker
    for pool in (gpu_worker.gpu, gpu_worker.admission, gpu_worker.delivery):
        pool.shutdown(wait=True)


def counting_generate(monkeypatch, fail_with: BaseException | None = None) -> list[int]:
    calls: list[int] = []
    real = run.generate

    def generate(loaded, requests, *args, **kwargs):
        calls.append(len(requests))
        if fail_with is not None:
            raise fail_with
        return real(loaded, requests, *args, **kwargs)

    monkeypatch.setattr(run, "generate", generate)
    return calls


@pytest.mark.parametrize("fault", [torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
                                   RuntimeError("CUDA error: device-side assert triggered")])
def test_after_a_fatal_gpu_error_the_worker_refuses_every_job_without_touching_the_gpu(worker, monkeypatch, fault):
    calls = counting_generate(monkeypatch, fail_with=fault)
    with pytest.raises(AcceleratorFault, match="unrecoverable error.*this worker takes no more jobs"):
        asyncio.run(worker.generate(SONG, "job-1"))
    monkeypatch.undo()  # even with a working render, the GPU is not trusted again
    calls_after = counting_generate(monkeypatch)
    with pytest.raises(AcceleratorFault):
        asyncio.run(worker.generate(SONG, "job-2"))
    with pytest.raises(AcceleratorFault):
        asyncio.run(worker.on_gpu(lambda: "format_input"))
    assert calls == [1] and calls_after == []


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"),
                                   torch.AcceleratorError("CUDA error: out of memory"),
                                   torch.AcceleratorError("CUDA error: invalid configuration argument")])
def test_errors_that_leave_the_gpu_usable_fail_the_job_only(worker, monkeypatch, error):
    counting_generate(monkeypatch, fail_with=error)
    with pytest.raises(type(error)):
        asyncio.run(worker.generate(SONG, "job-1"))
    monkeypatch.undo()
    assert worker.fault is None
    assert asyncio.run(worker.generate(SONG, "job-2")).audios


FAULT_SCRIPT = r"""
import asyncio, json
import handler
from inference import run
from runpod.serverless.modules.rp_job import run_job

real = run.generate
def broken(*args, **kwargs):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
run.generate = broken
job = {"prompt": "x", "audio_duration": 10, "inference_steps": 2, "batch_size": 1}
first = asyncio.run(run_job(handler.handler, {"id": "job-1", "input": job}))
run.generate = real
second = asyncio.run(run_job(handler.handler, {"id": "job-2", "input": job}))
print(json.dumps([first, second, handler.concurrency_modifier(2)]))
"""


def test_runpod_is_told_to_replace_a_worker_whose_gpu_broke(checkpoint_dir):
    done = subprocess.run([sys.executable, "-c", FAULT_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=worker_env(checkpoint_dir, ACESTEP_WARMUP="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    first, second, concurrency = json.loads(done.stdout.strip().splitlines()[-1])
    for result in (first, second):  # what the SDK sends RunPod: the error, and stop this worker
        assert result["stopPod"] is True
        assert "the GPU hit an unrecoverable error" in result["error"] and "\n" not in result["error"]
        assert result["error"].endswith("RunPod replaces it, submit the job again")
    assert concurrency == 0  # the SDK's job loop takes no more jobs while RunPod replaces the worker


def test_a_job_cancelled_while_waiting_is_never_rendered(worker, monkeypatch):
    calls = counting_generate(monkeypatch)

    async def main():
        release = threading.Event()
        busy = asyncio.ensure_future(worker.on_gpu(release.wait, 30))  # the GPU thread is taken
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(worker.generate({**SONG, "seed": i}, f"job-{i}")) for i in range(3)]
        await asyncio.sleep(0.5)  # admitted and planned is not possible yet: planning waits for the GPU thread
        waiting[1].cancel()
        release.set()
        await busy
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[0].audios and results[2].audios
    assert sum(calls) == 2  # two songs rendered, none for the cancelled job


def test_a_render_whose_jobs_were_all_cancelled_stops_at_its_next_step(worker):
    steps: list[str] = []

    async def main():
        loop = asyncio.get_running_loop()
        job: asyncio.Future | None = None

        def progress(fraction: float, stage: str) -> None:
            steps.append(stage)
            if stage == "generating" and steps.count("generating") == 1:
                loop.call_soon_threadsafe(job.cancel)
                time.sleep(0.3)  # the loop marks the job cancelled before the next step

        job = asyncio.ensure_future(worker.generate({**SONG, "inference_steps": 8}, "job-1", progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(0.5)  # the GPU thread finishes what it was doing

    asyncio.run(main())
    assert 1 <= steps.count("generating") < 8 and "decoding" not in steps


def test_an_lm_out_of_memory_is_a_friendly_error(lm_service, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3 GiB")

    monkeypatch.setattr(lm_service.planner, "plan", out_of_memory)
    monkeypatch.setattr(lm_service.planner, "format", out_of_memory)
    with pytest.raises(GenerationError, match="out of GPU memory while the 5 Hz LM planned the song; try thinking=false"):
        lm_service.stage({**SONG, "thinking": True}, "job-1")
    with pytest.raises(GenerationError, match="out of GPU memory while the 5 Hz LM"):
        lm_service.format_input({"prompt": "x", "lyrics": "y"})


def test_the_default_lm_failing_to_load_leaves_the_worker_serving_without_it(lm_checkpoint_dir, monkeypatch, caplog):
    import transformers

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory while loading")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", broken)
    default = Settings(ACESTEP_CHECKPOINT_DIR=lm_checkpoint_dir)
    assert load_lm(default, torch.device("cpu"), torch.float32) is None
    assert "the default 5 Hz LM failed to load, serving without it" in caplog.text
    assert "CUDA out of memory while loading" in caplog.text
    named = Settings(ACESTEP_CHECKPOINT_DIR=lm_checkpoint_dir, ACESTEP_LM_MODEL=LM)  # the operator asked for it
    with pytest.raises(CheckpointError, match="could not load the 5 Hz LM at .*: CUDA out of memory while loading"):
        load_lm(named, torch.device("cpu"), torch.float32)


def test_pod_mode_reports_a_broken_gpu_on_health_and_refuses_new_tasks(loaded, settings, tmp_path, monkeypatch):
    from api_shim.backends.local import LocalBackend
    from api_shim.envelope import ApiError
    from api_shim.task_store import TaskStore

    counting_generate(monkeypatch, fail_with=RuntimeError("CUDA error: unspecified launch failure"))
    pod = settings.model_copy(update={"output_dir": tmp_path / "out"})
    backend = LocalBackend(pod, TaskStore(tmp_path / "tasks.sqlite3"), lambda s: GenerationService(loaded, s))

    async def main():
        await backend.start()
        while backend.service is None:
            await asyncio.sleep(0.05)
        task_id = (await backend.submit(dict(SONG))).task_id
        while (item := (await backend.query([task_id]))[0]).status == 0:
            await asyncio.sleep(0.05)
        health = await backend.health()
        with pytest.raises(ApiError) as refused:
            await backend.submit(dict(SONG))
        await backend.stop()
        return item, health, refused.value

    item, health, refused = asyncio.run(main())
    assert item.status == 2 and "the GPU hit an unrecoverable error" in item.progress_text
    assert health.status == "unavailable" and "unspecified launch failure" in health.error
    assert refused.status == 503 and refused.message.endswith("restart the server")
