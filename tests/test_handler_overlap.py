"""With two jobs in flight, the worker generates the second while the first is encoded and delivered, and
never generates two at once (one model, one GPU thread)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, worker_env

SCRIPT = r"""
import asyncio, json, time
import handler

events = []
for name in ("render", "deliver"):
    original = getattr(handler.SERVICE, name)
    def wrapped(*args, _original=original, _name=name, **kwargs):
        job = args[0].job_id if _name == "deliver" else args[1]
        events.append((_name + "-start", job, time.perf_counter()))
        try:
            return _original(*args, **kwargs)
        finally:
            events.append((_name + "-end", job, time.perf_counter()))
    setattr(handler.SERVICE, name, wrapped)

job = {"prompt": "x", "lyrics": "[inst]", "audio_duration": 10, "batch_size": 2, "audio_format": "mp3"}
async def main():
    return await asyncio.gather(*(handler.handler({"id": f"job-{i}", "input": job}) for i in (1, 2)))
results = asyncio.run(main())
assert all("error" not in r for r in results), results
print(json.dumps({"events": events, "concurrency": handler.concurrency_modifier(1)}))
"""


def test_the_next_job_generates_while_the_last_one_is_delivered(checkpoint_dir):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=worker_env(checkpoint_dir, ACESTEP_WARMUP="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    at = {(name, job): t for name, job, t in report["events"]}
    assert report["concurrency"] == 2  # RunPod's job loop keeps two jobs in flight
    first, second = sorted(("job-1", "job-2"), key=lambda j: at[("render-start", j)])
    assert at[("render-start", second)] >= at[("render-end", first)]  # never two generations at once
    assert at[("render-start", second)] < at[("deliver-end", first)]  # generation overlaps the delivery
