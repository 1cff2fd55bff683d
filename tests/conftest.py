"""Shared fixtures: a tiny real checkpoint, a loaded pipeline, real servers on loopback.

Nothing here is a mock: the checkpoint is written by ``save_pretrained`` in the real layout and loaded by
the real loading code; S3 is moto's standalone HTTP server in its own process; the worker runs as
``python handler.py`` under RunPod's own SDK.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DIT = "acestep-v15-turbo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}: {read_log(process)}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def read_log(process: subprocess.Popen) -> str:
    log = getattr(process, "log_path", None)
    return Path(log).read_text()[-4000:] if log and Path(log).exists() else ""


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decoded audio as [frames, channels] float32, and its sample rate."""
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio, rate


def silent_flac(seconds: float, rate: int = 48_000, unknown_length: bool = False) -> bytes:
    """A mono FLAC of silence: an hour of it is a few hundred KB (a decompression bomb). ``unknown_length``
    zeroes the length in its header (STREAMINFO's total samples, "unknown" as streaming encoders write it)."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as out:
        minute = np.zeros(60 * rate, dtype=np.int16)
        for _ in range(int(seconds // 60)):
            out.write(minute)
        out.write(minute[: int(seconds % 60 * rate)])
    data = bytearray(buffer.getvalue())
    if unknown_length:  # "fLaC", a block header, then STREAMINFO: its bytes 10-17 end with the 36-bit length
        packed = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
        data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def wav_bytes(frames: int, rate: int = 48_000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((frames, channels), dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    from inference.demo_checkpoint import make_demo_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    make_demo_checkpoint(root / DIT)
    return root


@pytest.fixture(scope="session")
def settings(checkpoint_dir, tmp_path_factory):
    from inference.settings import Settings

    return Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_dir, ACESTEP_WARMUP=False,
                    ACESTEP_UNDELIVERED_DIR=tmp_path_factory.mktemp("undelivered"))


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """A tiny base model (guidance, the base-only tasks), converted from the original layout."""
    from builder.convert import convert
    from inference.load import load_pipeline
    from inference.settings import Settings
    from tests.original_layout import write_original_checkpoint

    root = tmp_path_factory.mktemp("base")
    write_original_checkpoint(root / "src", dit="acestep-v15-base")
    target = convert(root / "src", "acestep-v15-base", root / "out")
    return load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))


@pytest.fixture(scope="session")
def loaded(settings):
    from inference.load import load_pipeline

    return load_pipeline(settings)


def worker_env(checkpoint_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process: the tiny checkpoint, no bucket, nothing inherited that matters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "ACESTEP_", "RUNPOD_"))}
    env.update(ACESTEP_CHECKPOINT_DIR=str(checkpoint_dir), ACESTEP_DIT_MODEL=DIT, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's standalone S3-compatible server, in its own process on a loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process, timeout=60)
        yield url
    finally:
        stop(process)


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test-key",
                        aws_secret_access_key="test-secret-value", region_name="us-east-1")


@pytest.fixture
def bucket(s3_server) -> str:
    import uuid

    name = f"songs-{uuid.uuid4().hex[:10]}"
    s3_client(s3_server).create_bucket(Bucket=name)
    return name


def start_worker_api(checkpoint_dir: Path, log_dir: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``python handler.py --rp_serve_api``: RunPod's local API server around the real handler."""
    port = free_port()
    log_path = log_dir / f"worker-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "handler.py", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)],
            cwd=ROOT, env=worker_env(checkpoint_dir, **env), stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/docs", process)
    return process, url


@pytest.fixture(scope="module")
def worker_api(checkpoint_dir, tmp_path_factory):
    # the tests' buckets (moto) are on loopback: allowed here as an operator of a private bucket would allow it
    process, url = start_worker_api(checkpoint_dir, tmp_path_factory.mktemp("worker"),
                                    ACESTEP_ALLOW_PRIVATE_ENDPOINTS="1")
    try:
        yield url, process
    finally:
        stop(process)


def runsync(url: str, job_input, timeout: float = 120, **extra) -> dict:
    response = requests.post(f"{url}/runsync", json={"input": job_input, **extra}, timeout=timeout)
    response.raise_for_status()
    return response.json()


def start_shim(checkpoint_dir: Path, output_dir: Path, wait_ready: bool = True, **env: str
               ) -> tuple[subprocess.Popen, str]:
    """``python -m api_shim`` on a loopback port: the real app under uvicorn, in its own process."""
    port = free_port()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir.parent / f"shim-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api_shim"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=worker_env(checkpoint_dir, ACESTEP_API_HOST="127.0.0.1", ACESTEP_API_PORT=str(port),
                           ACESTEP_OUTPUT_DIR=str(output_dir), ACESTEP_WARMUP="0", **env))
    process.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", process)
    if wait_ready:
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the shim did not become ready: {read_log(process)}")
            time.sleep(0.2)
    return process, url


def wait_for_task(url: str, task_id: str, timeout: float = 120, headers: dict | None = None) -> dict:
    """Poll /query_result until the task is finished; returns its item."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.post(f"{url}/query_result", json={"task_id_list": [task_id]}, headers=headers, timeout=10)
        response.raise_for_status()
        [item] = response.json()["data"]
        if item["status"] != 0:
            return item
        time.sleep(0.2)
    raise TimeoutError(f"task {task_id} did not finish within {timeout} s")


LM = "acestep-5Hz-lm-0.6B"


@pytest.fixture(scope="session")
def lm_checkpoint_dir(tmp_path_factory) -> Path:
    """The tiny DiT and, next to it, a tiny random 5 Hz LM with the real tokenizer layout."""
    from inference.demo_checkpoint import make_demo_checkpoint
    from inference.lm.demo import make_demo_lm

    root = tmp_path_factory.mktemp("checkpoints-lm")
    make_demo_checkpoint(root / DIT)
    make_demo_lm(root / LM)
    return root


@pytest.fixture(scope="session")
def lm_service(lm_checkpoint_dir, tmp_path_factory):
    from inference.service import GenerationService
    from inference.settings import Settings

    return GenerationService.start(Settings(ACESTEP_CHECKPOINT_DIR=lm_checkpoint_dir, ACESTEP_WARMUP=False,
                                            ACESTEP_MAX_DURATION=30,
                                            ACESTEP_UNDELIVERED_DIR=tmp_path_factory.mktemp("undelivered-lm")))
