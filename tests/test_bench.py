"""The bench scripts keep working: each runs on the tiny checkpoint and ends with its headline figure."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, worker_env


@pytest.mark.parametrize("script, args, headline", [
    ("bench/overhead.py", ["--rounds", "1"], "overhead_ratio"),
    ("bench/shim_polls.py", ["--rate", "40", "--clients", "2", "--seconds", "1"], "poll_p99_ms"),
    ("bench/lm.py", ["--rounds", "1"], "lm_to_dit_ratio"),
    ("bench/gpu.py", ["--durations", "10", "--batches", "1,2", "--rounds", "1"], "seconds_per_song"),
    ("bench/cold_start.py", ["--rounds", "1"], "cold_start_s"),
    ("bench/cold_start.py", ["--rounds", "1", "--cache"], "cached_to_baked_ratio"),
    ("bench/soak.py", ["--seconds", "20", "--clients", "2", "--sample-every", "1"], "poll_p99_ms"),
    ("bench/fidelity.py", ["--rounds", "1", "--duration", "10", "--steps", "2"], "dcw_ratio"),
    ("bench/encoders.py", ["--rounds", "1", "--seconds", "3"], "mp3_speedup"),
    ("bench/mp3_parts.py", ["--rounds", "1", "--seconds", "40"], "parts_wall_ratio"),
    ("bench/lora.py", ["--rounds", "1", "--steps", "2"], "lora_step_ratio"),
])
def test_bench_prints_its_headline_last(script, args, headline, lm_checkpoint_dir):
    if script not in ("bench/gpu.py", "bench/encoders.py", "bench/mp3_parts.py") and "--cache" not in args:  # these need no checkpoint of the tests
        args = [*args, "--checkpoint-dir", str(lm_checkpoint_dir)]
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=worker_env(lm_checkpoint_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{headline} \d+(\.\d+)?", last), last
