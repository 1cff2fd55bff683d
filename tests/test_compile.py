"""torch.compile: a cache file baked by builder/bake_compile_cache.py that the next cold start loads instead
of compiling, and the same audio as eager. The DiT only (ACESTEP_COMPILE=dit): compiling the VAE decoder as
well ('all', the CUDA default) costs another minute of C++ builds on a CPU; bench/gpu.py --compile measures
it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from inference import run
from inference.contract import parse_generate_request
from inference.settings import Settings
from tests.conftest import ROOT, worker_env

REQUEST = {"prompt": "ambient", "lyrics": "[inst]", "audio_duration": 10, "inference_steps": 2, "seed": 11,
           "batch_size": 2}

# A cold start with ACESTEP_COMPILE=dit, then one request; prints the load report and saves the audio.
SCRIPT = r"""
import json, sys
import numpy as np
from dataclasses import asdict
from inference import run
from inference.load import load_pipeline
from inference.contract import parse_generate_request
from inference.settings import Settings
from torch._dynamo.utils import counters

loaded = load_pipeline(Settings.from_env())
[generation] = run.generate(loaded, [parse_generate_request(json.loads(sys.argv[1]), loaded.limits)])
np.save(sys.argv[2], np.stack([song.samples for song in generation.songs]))
compiled = loaded.report.compiled
print(json.dumps({"summary": loaded.report.summary(), "enabled": compiled.enabled, "regions": compiled.regions,
                  "cache_loaded": compiled.cache_loaded, "cache_saved": compiled.cache_saved,
                  "cache_hits": counters["inductor"]["fxgraph_cache_hit"]}))
"""


def cold_start(checkpoint_dir, cache_dir, out) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(REQUEST), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=400,
                          env=worker_env(checkpoint_dir, ACESTEP_COMPILE="dit", ACESTEP_COMPILE_CACHE=str(cache_dir),
                                         TORCHINDUCTOR_CACHE_DIR=str(out.parent / "inductor")))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_baked_cache_serves_the_next_cold_start_with_the_eager_audio(checkpoint_dir, loaded, tmp_path):
    # the image build's step on a GPU machine: compile, warm up, write the cache file
    baked = subprocess.run([sys.executable, "-m", "builder.bake_compile_cache", "--out", str(tmp_path / "cache"),
                            "--durations", "12"], cwd=ROOT, capture_output=True, text=True, timeout=400,
                           env=worker_env(checkpoint_dir, ACESTEP_COMPILE="dit",
                                          TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor-0")))
    assert baked.returncode == 0, baked.stderr[-3000:]
    [cache_file] = (tmp_path / "cache").iterdir()
    assert cache_file.name == f"torch-{torch.__version__.split('+')[0]}-cpu.bin"
    assert str(cache_file) in baked.stdout and cache_file.stat().st_size > 10_000

    # a fresh machine (no local inductor cache) with that file: kernels come from it, the audio is eager's
    [eager] = run.generate(loaded, [parse_generate_request(REQUEST, loaded.limits)])
    started = cold_start(checkpoint_dir, tmp_path / "cache", tmp_path / "worker" / "audio.npy")
    assert started["enabled"] and started["regions"] == 2  # the tiny DiT's two blocks
    assert started["cache_loaded"] and not started["cache_saved"]
    assert started["cache_hits"] > 0
    assert "compile on (cache loaded)" in started["summary"]
    np.testing.assert_allclose(np.load(tmp_path / "worker" / "audio.npy"),
                               np.stack([song.samples for song in eager.songs]), atol=1e-4)


def test_compile_is_off_by_default_without_cuda(loaded):
    assert not loaded.report.compiled.enabled
    assert "compile off" in loaded.report.summary()


def test_an_attention_kernel_that_is_not_installed_stops_the_start(checkpoint_dir):
    from inference.errors import SetupError
    from inference.load import load_pipeline

    with pytest.raises(SetupError, match="ACESTEP_ATTENTION_BACKEND='no-such-kernel' cannot be used"):
        load_pipeline(Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_dir, ACESTEP_WARMUP=False,
                               ACESTEP_ATTENTION_BACKEND="no-such-kernel"))
