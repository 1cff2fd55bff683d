"""Delivery against a real S3-compatible server (moto's, in its own process), a folder, and inline."""

import subprocess
import sys

import numpy as np
import pytest
import requests

from conftest import decode, free_port, s3_client, stop, wait_for_http
from s3_faults import S3Faults
from inference.audio import encode
from inference.errors import InputError, StorageError
from inference.settings import Settings
from inference.delivery import InlineTarget, LocalTarget, choose_target
from inference.delivery.buckets import S3Target

RATE = 48_000


def mp3(seconds=2.0, seed=0):
    noise = 0.3 * np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))
    return encode(noise.astype(np.float32), RATE, "mp3")


def env_bucket(endpoint, bucket, tmp_path, **extra):
    return Settings(**{"BUCKET_ENDPOINT_URL": endpoint, "BUCKET_ACCESS_KEY_ID": "test-key",
                       "BUCKET_SECRET_ACCESS_KEY": "test-secret-value", "BUCKET_NAME": bucket,
                       "BUCKET_PREFIX": "songs/v1", "ACESTEP_UNDELIVERED_DIR": tmp_path / "kept", **extra})


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
                                      "http://[fd00::1]", "http://0.0.0.0:80", "http://224.0.0.1"])
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
    assert "2 audio file(s) were kept by the worker (ACESTEP_UNDELIVERED_DIR) for job job-b" in message
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


def test_a_failure_in_the_middle_of_a_batch_reports_what_was_uploaded_and_keeps_the_rest(s3_server, bucket,
                                                                                        tmp_path):
    audios = [mp3(seed=s) for s in (6, 7, 8)]
    with S3Faults(s3_server) as faults:
        faults.pass_puts, faults.fail_all_puts = 1, 403  # the first upload lands, then the bucket refuses
        with pytest.raises(StorageError) as caught:
            choose_target(env_bucket(faults.url, bucket, tmp_path)).deliver(audios, "job-m")
    message = str(caught.value)
    assert "failed after 1 attempt(s): AccessDenied (HTTP 403)" in message
    assert "1 of 3 were uploaded (listed in 'uploaded')" in message
    assert "2 audio file(s) were kept by the worker (ACESTEP_UNDELIVERED_DIR) for job job-m for 24 h" in message
    [uploaded] = caught.value.uploaded  # the songs go up at once: whichever reached the bucket first landed
    stored = s3_client(s3_server).get_object(Bucket=bucket, Key=uploaded.key)["Body"].read()
    assert stored in [a.data for a in audios]
    kept = sorted(p.read_bytes() for p in (tmp_path / "kept" / "job-m").iterdir())
    assert kept == sorted(a.data for a in audios if a.data != stored)


def test_bucket_5xx_is_retried_and_a_slow_bucket_still_delivers(s3_server, bucket, tmp_path):
    with S3Faults(s3_server) as faults:
        faults.fail_puts = [500, 503]
        [first] = choose_target(env_bucket(faults.url, bucket, tmp_path)).deliver([mp3(seed=9)], "job-n")
        assert faults.puts == 3  # two injected failures, then the real upload
        faults.delay_s = 0.5
        [second] = choose_target(env_bucket(faults.url, bucket, tmp_path)).deliver([mp3(seed=10)], "job-o")
    for item in (first, second):
        assert s3_client(s3_server).head_object(Bucket=bucket, Key=item.key)["ContentLength"] > 0


def test_wrong_credentials_fail_at_once_without_retries(tmp_path):
    import os

    port = free_port()
    # moto with authentication on: a key it does not know is refused, as a real bucket refuses it
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint, process, timeout=60)
        settings = env_bucket(endpoint, "any-bucket", tmp_path, ACESTEP_UPLOAD_ATTEMPTS=5)
        with pytest.raises(StorageError, match=r"failed after 1 attempt\(s\): InvalidAccessKeyId \(HTTP 403\)"):
            choose_target(settings).deliver([mp3()], "job-p")
    finally:
        stop(process)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (the tests run as root, as CI does): a disk that fills up."""
    import os

    assert os.geteuid() == 0, "this test mounts a tmpfs and needs root"
    folder = tmp_path / "small-disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_while_keeping_audio_never_loses_the_error(small_disk):
    audios = [mp3(seconds=2.0, seed=s) for s in (11, 12)]  # about 48 KB each: the first fits, the second not
    target = InlineTarget(max_bytes=1000, keep_dir=small_disk)
    with pytest.raises(StorageError) as caught:
        target.deliver(audios, "job-q")
    message = str(caught.value)
    assert message.startswith("the audio is 0.1 MB, more than can be returned inline")
    assert "1 audio file(s) were kept by the worker (ACESTEP_UNDELIVERED_DIR) for job job-q for 24 h; the rest could " \
           "not be kept either (No space left on device)" in message
    assert [p.suffix for p in (small_disk / "job-q").iterdir()] == [".mp3"]  # no half-written file left


def test_kept_audio_older_than_its_retention_is_removed(tmp_path):
    import os
    import time

    from inference.delivery import undelivered

    old = tmp_path / "kept" / "old-job"
    old.mkdir(parents=True)
    (old / "a.mp3").write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    kept = undelivered.keep([mp3(seed=13)], "new-job", tmp_path / "kept", ttl_s=600)
    assert kept.count == 1 and kept.failure is None
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["new-job"]


def test_a_job_that_could_not_be_returned_inline_is_refused_before_generating():
    from inference.audio import expected_bytes
    from inference.errors import UnsupportedError

    target = choose_target(Settings())  # no bucket, no folder: inline, 7 MB
    target.check_fits(expected_bytes("mp3", 192, 120, 2, RATE))  # 5.8 MB
    with pytest.raises(UnsupportedError, match=r"^batch_size × audio_duration: the songs would be about 11.5 MB, more "
                                               r"than can be returned inline \(7.0 MB"):
        target.check_fits(expected_bytes("wav", 192, 60, 1, RATE))
    # the estimate holds for what the encoder really writes
    for fmt in ("mp3", "wav"):
        real = len(encode(np.zeros((2, 5 * RATE), dtype=np.float32), RATE, fmt).data)
        assert abs(real - expected_bytes(fmt, 192, 5, 1, RATE)) / real < 0.05


def test_a_bucket_boto3_would_refuse_is_refused_at_admission_not_after_the_render():
    job_bucket = {"endpointUrl": "https://1.1.1.1", "accessId": "a", "accessSecret": "s", "bucketName": "b",
                  "region": "us east 1"}
    with pytest.raises(InputError, match=r"^s3Config region must be letters, digits and hyphens"):
        choose_target(Settings(), job_bucket)


def test_a_full_output_folder_is_a_storage_error_saying_what_was_written(small_disk):
    audios = [mp3(seconds=2.0, seed=s) for s in (14, 15)]
    with pytest.raises(StorageError, match=r"^writing the audio to the output folder failed \(No space left on "
                                           r"device\); 1 of 2 were written"):
        LocalTarget(small_disk).deliver(audios, "job-r")


def test_a_batch_goes_up_at_once_and_a_bucket_keeps_its_client(s3_server, bucket, tmp_path):
    """The songs of a batch are uploaded side by side, and a job's own bucket (s3Config) is reached through one
    client kept for every later job: its connections stay open, none is made per job."""
    config = {"endpointUrl": None, "accessId": "test-key", "accessSecret": "test-secret-value", "bucketName": bucket}
    settings = Settings(ACESTEP_UNDELIVERED_DIR=tmp_path / "kept", ACESTEP_ALLOW_PRIVATE_ENDPOINTS=True)
    with S3Faults(s3_server) as faults:
        config["endpointUrl"] = faults.url
        faults.delay_s = 0.3  # long enough for the uploads of one batch to overlap
        choose_target(settings, config).deliver([mp3(seed=s) for s in range(4)], "job-q")
        assert faults.most_in_flight >= 2
        opened = faults.connections
        for job in ("job-r", "job-s"):
            choose_target(settings, dict(config)).deliver([mp3(seed=9)], job)
        assert faults.connections == opened  # the same client, its pooled connections reused


def test_a_long_wav_goes_up_in_parts(s3_server, bucket, tmp_path):
    from inference.delivery.buckets import MULTIPART_BYTES

    seconds = MULTIPART_BYTES / (RATE * 2 * 2) + 2  # past the multipart size as 16-bit stereo
    noise = (0.2 * np.random.default_rng(3).standard_normal((2, int(seconds * RATE)))).astype(np.float32)
    audio = encode(noise, RATE, "wav")
    [item] = choose_target(env_bucket(s3_server, bucket, tmp_path)).deliver([audio], "job-t")
    head = s3_client(s3_server).head_object(Bucket=bucket, Key=item.key)
    assert head["ETag"].strip('"').split("-")[-1].isdigit() and "-" in head["ETag"]  # a multipart object's ETag
    assert head["ContentType"] == "audio/wav"
    assert requests.get(item.url, timeout=30).content == audio.data
