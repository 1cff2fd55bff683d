"""Delivery against a real S3-compatible server (moto's, in its own process), a folder, and inline."""

import subprocess
import sys

import numpy as np
import pytest
import requests

from conftest import decode, free_port, s3_client, stop, wait_for_http
from inference.audio import encode
from inference.errors import InputError, StorageError
from inference.settings import Settings
from inference.storage import InlineTarget, LocalTarget, S3Target, choose_target

RATE = 48_000


def mp3(seconds=2.0, seed=0):
    noise = 0.3 * np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))
    return encode(noise.astype(np.float32), RATE, "mp3")


def env_bucket(endpoint, bucket, tmp_path, **extra):
    return Settings(BUCKET_ENDPOINT_URL=endpoint, BUCKET_ACCESS_KEY_ID="test-key",
                    BUCKET_SECRET_ACCESS_KEY="test-secret-value", BUCKET_NAME=bucket, BUCKET_PREFIX="songs/v1",
                    ACESTEP_UNDELIVERED_DIR=tmp_path / "kept", ACESTEP_UPLOAD_BACKOFF=0.05, **extra)


def test_upload_then_download_the_presigned_url_and_decode(s3_server, bucket, tmp_path):
    target = choose_target(env_bucket(s3_server, bucket, tmp_path))
    assert isinstance(target, S3Target)
    audios = [mp3(seed=1), mp3(seed=2)]
    delivered = target.deliver(audios, "job-123")
    assert len({d.key for d in delivered}) == 2
    for item, audio in zip(delivered, audios):
        assert item.key.startswith("songs/v1/job-123/") and item.key.endswith(".mp3")
        response = requests.get(item.url, timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "audio/mpeg"
        assert response.content == audio.data
        decoded, rate = decode(response.content)
        assert rate == RATE and decoded.shape[1] == 2


def test_the_jobs_s3config_wins_over_the_environment_bucket(s3_server, bucket, tmp_path):
    settings = env_bucket("http://127.0.0.1:9", "env-bucket-that-does-not-exist", tmp_path).model_copy(
        update={"allow_private_endpoints": True})  # moto listens on loopback
    job_bucket = {"endpointUrl": s3_server, "accessId": "test-key", "accessSecret": "test-secret-value",
                  "bucketName": bucket}
    target = choose_target(settings, job_bucket)
    [item] = target.deliver([mp3()], "job-9")
    assert s3_client(s3_server).head_object(Bucket=bucket, Key=item.key)["ContentType"] == "audio/mpeg"


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "http://localhost", "http://169.254.169.254",
                                      "http://10.0.0.7:9000", "http://192.168.1.2", "http://[::1]:80",
                                      "http://[fd00::1]", "http://0.0.0.0:80"])
def test_a_jobs_bucket_must_be_on_a_public_address(endpoint):
    job_bucket = {"endpointUrl": endpoint, "accessId": "a", "accessSecret": "s", "bucketName": "b"}
    with pytest.raises(InputError, match=r"^s3Config.endpointUrl must point to a public address"):
        choose_target(Settings(), job_bucket)
    assert choose_target(Settings(ACESTEP_ALLOW_PRIVATE_ENDPOINTS=True), job_bucket).kind == "s3"  # operator's choice
    with pytest.raises(InputError, match="must be an http:// or https:// URL"):
        choose_target(Settings(), {**job_bucket, "endpointUrl": "file:///etc/passwd"})


def test_an_incomplete_s3config_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="s3Config needs non-empty.*missing or invalid: accessSecret, bucketName"):
        choose_target(Settings(), {"endpointUrl": "http://x", "accessId": "a"})


def test_server_stopped_mid_run_fails_clearly_and_keeps_the_audio(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint, process, timeout=60)
        s3_client(endpoint).create_bucket(Bucket="short-lived")
        target = choose_target(env_bucket(endpoint, "short-lived", tmp_path))
        [first] = target.deliver([mp3(seed=3)], "job-a")  # the server is up: this one lands
        assert first.key
    finally:
        stop(process)
    audios = [mp3(seed=4), mp3(seed=5)]
    with pytest.raises(StorageError) as caught:
        target.deliver(audios, "job-b")
    message = str(caught.value)
    assert "upload to bucket 'short-lived' failed after 4 attempt(s)" in message
    assert "2 audio file(s) were kept on the worker for job job-b" in message
    assert str(tmp_path) not in message and "test-secret-value" not in message
    kept = sorted((tmp_path / "kept" / "job-b").iterdir())
    assert sorted(p.read_bytes() for p in kept) == sorted(a.data for a in audios)


def test_a_missing_bucket_fails_without_waiting_for_retries(s3_server, tmp_path):
    settings = env_bucket(s3_server, "no-such-bucket-here", tmp_path, ACESTEP_UPLOAD_ATTEMPTS=5)
    with pytest.raises(StorageError, match=r"after 1 attempt\(s\): NoSuchBucket \(HTTP 404\)"):
        choose_target(settings).deliver([mp3()], "job-c")


def test_output_dir_writes_files_and_returns_absolute_paths(tmp_path):
    target = choose_target(Settings(ACESTEP_OUTPUT_DIR=tmp_path / "out"))
    assert isinstance(target, LocalTarget)
    audio = mp3()
    [item] = target.deliver([audio], "job-d")
    assert item.path.startswith(str(tmp_path)) and open(item.path, "rb").read() == audio.data
    assert not list((tmp_path / "out").glob("*.part"))


def test_inline_fits_or_says_to_configure_a_bucket_and_keeps_the_audio(tmp_path):
    import base64

    target = choose_target(Settings(ACESTEP_UNDELIVERED_DIR=tmp_path / "kept"))
    assert isinstance(target, InlineTarget)
    audio = mp3()
    [item] = target.deliver([audio], "job-e")
    assert base64.b64decode(item.base64) == audio.data
    small = InlineTarget(max_bytes=1000, keep_dir=tmp_path / "kept")
    with pytest.raises(StorageError, match="configure a bucket"):
        small.deliver([audio], "job-f")
    assert len(list((tmp_path / "kept" / "job-f").iterdir())) == 1
