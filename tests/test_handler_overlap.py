"""Several jobs in flight: the worker generates the next job while the last one is encoded and delivered,
never generates two at once (one model, one GPU thread), and renders compatible waiting jobs as one batch."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.conftest import ROOT, worker_env

# Instruments the handler's service (records when each part starts and ends), then runs the jobs of JOBS
# concurrently through handler.handler, as RunPod's job loop does with concurrency_modifier > 1.
SCRIPT = r"""
import asyncio, json, os, sys, time
import handler

events = []
for owner, name in ((handler.WORKER.batcher, "render"), (handler.SERVICE, "deliver")):
    original = getattr(owner, name)
    def wrapped(arg, *args, _original=original, _name=name, **kwargs):
        jobs = [s.job_id for s in arg] if _name == "render" else [arg.job_id]
        events.append((_name + "-start", jobs, time.perf_counter()))
        try:
            return _original(arg, *args, **kwargs)
        finally:
            events.append((_name + "-end", jobs, time.perf_counter()))
    setattr(owner, name, wrapped)

jobs = json.loads(sys.argv[1])
async def main():
    return await asyncio.gather(*(handler.handler({"id": job_id, "input": job}) for job_id, job in jobs))
results = asyncio.run(main())
print(json.dumps({"events": events, "results": results, "concurrency": handler.concurrency_modifier(1)}))
"""


def run_jobs(checkpoint_dir, jobs: list[tuple[str, dict]]) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(jobs)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=worker_env(checkpoint_dir, ACESTEP_WARMUP="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def song(duration: float, seed: int, **extra) -> dict:
    return {"prompt": "x", "lyrics": "[inst]", "audio_duration": duration, "batch_size": 1, "seed": seed,
            "audio_format": "wav", **extra}


def samples(result: dict) -> np.ndarray:
    audio, _ = sf.read(io.BytesIO(base64.b64decode(result["audios"][0]["base64"])), dtype="float32")
    return audio


def test_the_next_job_generates_while_the_last_one_is_delivered(checkpoint_dir):
    # different durations: these two cannot share a batch
    report = run_jobs(checkpoint_dir, [("job-1", song(10, 1, batch_size=2, audio_format="mp3")),
                                       ("job-2", song(12, 2, batch_size=2, audio_format="mp3"))])
    assert all("error" not in r for r in report["results"]), report["results"]
    at = {(name, job): t for name, jobs, t in report["events"] for job in jobs}
    assert report["concurrency"] == 2  # by default RunPod's job loop keeps two jobs in flight on a worker
    first, second = sorted(("job-1", "job-2"), key=lambda j: at[("render-start", j)])
    assert at[("render-start", second)] >= at[("render-end", first)]  # never two generations at once
    assert at[("render-start", second)] < at[("deliver-end", first)]  # generation overlaps the delivery


def test_compatible_waiting_jobs_render_as_one_batch(checkpoint_dir):
    jobs = [("first", song(10, 1)), ("a", song(12, 21)), ("b", song(12, 22)), ("other", song(14, 23)),
            ("c", song(12, 24, batch_size=2))]
    report = run_jobs(checkpoint_dir, jobs)
    results = dict(zip([j for j, _ in jobs], report["results"]))
    assert all("error" not in r for r in results.values()), results
    batches = [jobs for name, jobs, _ in report["events"] if name == "render-start"]
    # "first" had the GPU to itself; the three 12 s jobs waited for it together and rendered as one call;
    # the 14 s job could not join them
    assert sorted(sorted(b) for b in batches) == [["a", "b", "c"], ["first"], ["other"]]
    assert [len(results[j]["audios"]) for j in ("a", "b", "c")] == [1, 1, 2]
    assert [a["seed"] for a in results["c"]["audios"]] == [24, 25]
    assert all(abs(results[j]["audios"][0]["duration"] - 12) < 0.01 for j in ("a", "b", "c"))

    # a song rendered in a batch with other jobs is the song its seed gives alone
    alone = run_jobs(checkpoint_dir, [("b-alone", song(12, 22))])["results"][0]
    np.testing.assert_allclose(samples(results["b"]), samples(alone), atol=2e-4)
