"""thinking, format_input and sample_query through the real adapters: ``python handler.py`` in RunPod's local
test mode, and the HTTP shim over real sockets, both on the tiny checkpoint with its tiny random 5 Hz LM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT, decode, start_shim, stop, wait_for_task, worker_env


def test_thinking_through_the_handler(lm_checkpoint_dir, tmp_path):
    job = {"input": {"caption": "dreamy synthwave", "lyrics": "[Chorus]\nneon", "thinking": True, "duration": 10,
                     "batch_size": 2, "seed": 3}}
    out = tmp_path / "songs"
    done = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(job)], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env=worker_env(lm_checkpoint_dir, ACESTEP_OUTPUT_DIR=str(out), ACESTEP_WARMUP="0"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "5 Hz LM acestep-5Hz-lm-0.6B loaded" in done.stdout + done.stderr
    files = sorted(out.glob("*.mp3"))
    assert len(files) == 2 and all(abs(decode(f.read_bytes())[0].shape[0] / 48000 - 10) < 0.1 for f in files)


@pytest.fixture(scope="module")
def lm_shim(lm_checkpoint_dir, tmp_path_factory):
    process, url = start_shim(lm_checkpoint_dir, tmp_path_factory.mktemp("lm-shim") / "outputs",
                              ACESTEP_MAX_DURATION="30")
    try:
        yield url
    finally:
        stop(process)


def test_thinking_through_the_shim(lm_shim):
    body = {"caption": "lofi piano", "lyrics": "[Verse]\nrain", "thinking": True, "duration": 10, "batch_size": 1,
            "bpm": 84}
    task_id = requests.post(f"{lm_shim}/release_task", json=body, timeout=30).json()["data"]["task_id"]
    item = wait_for_task(lm_shim, task_id)
    assert item["status"] == 1, item
    [result] = json.loads(item["result"])
    assert result["lm_model"] == "acestep-5Hz-lm-0.6B" and result["metas"]["bpm"] == 84
    assert result["metas"]["keyscale"] and result["metas"]["prompt"] == "lofi piano"
    samples, rate = decode(requests.get(lm_shim + result["file"], timeout=30).content)
    assert rate == 48000 and abs(samples.shape[0] / rate - 10) < 0.1


def test_format_input_through_the_shim(lm_shim):
    response = requests.post(f"{lm_shim}/format_input", json={
        "prompt": "rock", "lyrics": "[Verse]\nyo", "temperature": 0.7,
        "param_obj": {"duration": 20, "key": "C major", "language": "en"}}, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"caption", "lyrics", "bpm", "key_scale", "time_signature", "duration", "vocal_language"}
    assert data["key_scale"] == "C major" and data["duration"] == 20 and data["vocal_language"] == "en"
    assert 30 <= data["bpm"] <= 300 and data["time_signature"] in ("2", "3", "4", "6")
    models = requests.get(f"{lm_shim}/v1/models", timeout=10).json()["data"]
    assert models["lm_models"] == [{"name": "acestep-5Hz-lm-0.6B", "is_loaded": True}]


def test_sample_query_through_the_shim(lm_shim):
    body = {"sample_query": "an upbeat song about summer", "duration": 10, "batch_size": 1}
    task_id = requests.post(f"{lm_shim}/release_task", json=body, timeout=30).json()["data"]["task_id"]
    item = wait_for_task(lm_shim, task_id)
    assert item["status"] == 1, item
    [result] = json.loads(item["result"])
    assert result["prompt"]  # the LM wrote a caption
