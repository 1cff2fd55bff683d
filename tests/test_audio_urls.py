"""Audio inputs by URL: fetched at admission with the guards of any caller-chosen address (public addresses only,
every redirect hop checked before it is followed, size and time caps), or from the job's bucket by s3:// URL."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
from pydantic import SecretStr

from inference.audio_fetch import MAX_REDIRECTS, fetch_http
from inference.contract.vocabulary import MAX_AUDIO_INPUT_BYTES
from inference.errors import InputError
from inference.gpu_worker import GpuWorker
from inference.service import GenerationService
from tests.conftest import s3_client

SOURCE = io.BytesIO()
sf.write(SOURCE, (0.2 * np.random.default_rng(3).standard_normal(44_100 * 11)).astype(np.float32), 44_100,
         format="WAV")
SOURCE_BYTES = SOURCE.getvalue()
JOB = {"prompt": "x", "lyrics": "[inst]", "inference_steps": 2, "batch_size": 1, "audio_format": "wav",
       "task_type": "cover"}


@pytest.fixture(scope="module")
def files():
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            if self.path == "/song.wav":
                self._send(200, SOURCE_BYTES, {"Content-Type": "audio/wav"})
            elif self.path.startswith("/hop/"):
                left = int(self.path.rsplit("/", 1)[1])
                self._send(302, b"", {"Location": "/song.wav" if left == 0 else f"/hop/{left - 1}"})
            elif self.path == "/to-internal":
                self._send(302, b"", {"Location": "/internal/admin"})
            elif self.path == "/to-file":
                self._send(302, b"", {"Location": "file:///etc/passwd"})
            elif self.path == "/declared-huge":
                self._send(200, b"", {"Content-Length": str(MAX_AUDIO_INPUT_BYTES + 1)}, length=False)
            elif self.path == "/slow":  # a trickle: the whole fetch has a deadline, not each read
                self.send_response(200)
                self.send_header("Content-Length", str(len(SOURCE_BYTES)))
                self.end_headers()
                try:
                    for start in range(0, len(SOURCE_BYTES), 4096):
                        self.wfile.write(SOURCE_BYTES[start:start + 4096])
                        self.wfile.flush()
                        time.sleep(0.3)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif self.path == "/endless":  # no length: the cap is counted as the bytes come
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(MAX_AUDIO_INPUT_BYTES // (1 << 20) + 2):
                        self.wfile.write(b"\0" * (1 << 20))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
            else:
                self._send(404, b"no")

        def _send(self, status, body, headers=None, length=True):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def worker_for(loaded, settings, **changes) -> GpuWorker:
    return GpuWorker(GenerationService(loaded, settings.model_copy(update=changes)))


def test_a_source_by_url_through_redirects_is_rendered(loaded, settings, files):
    url, _ = files
    worker = worker_for(loaded, settings, allow_private_endpoints=True)  # the operator's own file server
    response = asyncio.run(worker.generate({**JOB, "src_audio_url": f"{url}/hop/3"}, "job-url"))
    assert response.audios[0].duration == pytest.approx(11.0, abs=0.05)  # the source's length: it was used


def test_by_default_a_url_on_the_workers_own_network_is_refused_before_any_gpu_work(loaded, settings, files):
    url, hits = files
    before = len(hits)
    for address in (f"{url}/song.wav", "http://169.254.169.254/latest/meta-data", "http://10.0.0.8/a.wav"):
        with pytest.raises(InputError, match=r"^src_audio_url must point to a public address"):
            asyncio.run(worker_for(loaded, settings).generate({**JOB, "src_audio_url": address}, "job-private"))
    assert len(hits) == before  # not even connected to


def test_every_redirect_hop_is_checked_before_it_is_followed(files):
    url, hits = files

    def public_but_not_internal(address: str, field: str) -> str:  # as if only /internal were a private address
        if "/internal" in address:
            raise InputError(f"{field} must point to a public address")
        return "127.0.0.1"

    with pytest.raises(InputError, match="must point to a public address"):
        fetch_http(f"{url}/to-internal", "src_audio_url", public_but_not_internal)
    assert not any(h.startswith("/internal") for h in hits)
    with pytest.raises(InputError, match="redirected to a non-http"):
        fetch_http(f"{url}/to-file", "src_audio_url", public_but_not_internal)
    with pytest.raises(InputError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch_http(f"{url}/hop/{MAX_REDIRECTS + 1}", "src_audio_url", public_but_not_internal)
    assert fetch_http(f"{url}/hop/{MAX_REDIRECTS - 1}", "src_audio_url", public_but_not_internal) == SOURCE_BYTES


def test_the_connection_goes_to_the_address_that_was_checked(files):
    url, _ = files
    port = url.rsplit(":", 1)[1]
    checked = []

    def resolved_once(address: str, field: str) -> str:  # the host does not resolve at all: only this answer counts
        checked.append(address)
        return "127.0.0.1"

    assert fetch_http(f"http://audio.invalid:{port}/song.wav", "src_audio_url", resolved_once) == SOURCE_BYTES
    assert checked == [f"http://audio.invalid:{port}/song.wav"]


def test_size_and_time_caps(files):
    url, _ = files
    allow = lambda address, field: "127.0.0.1"  # noqa: E731 - the address rule is not what is tested here
    started = time.monotonic()
    with pytest.raises(InputError, match=r"did not arrive within 2 s"):
        fetch_http(f"{url}/slow", "src_audio_url", allow, timeout_s=2)
    assert time.monotonic() - started < 4
    with pytest.raises(InputError, match=r"at most 30 MiB of audio \(the server says"):
        fetch_http(f"{url}/declared-huge", "reference_audio_url", allow)
    with pytest.raises(InputError, match=r"^reference_audio_url must be at most 30 MiB of audio$"):
        fetch_http(f"{url}/endless", "reference_audio_url", allow)
    with pytest.raises(InputError, match="answered HTTP 404"):
        fetch_http(f"{url}/missing.wav", "reference_audio_url", allow)


def test_an_s3_url_is_read_with_the_jobs_bucket_credentials(loaded, settings, s3_server, bucket):
    s3_client(s3_server).put_object(Bucket=bucket, Key="inputs/source.wav", Body=SOURCE_BYTES)
    s3_config = {"endpointUrl": s3_server, "accessId": "test-key", "accessSecret": "test-secret-value",
                 "bucketName": bucket}
    worker = worker_for(loaded, settings, allow_private_endpoints=True)
    response = asyncio.run(worker.generate({**JOB, "src_audio_url": f"s3://{bucket}/inputs/source.wav"}, "job-s3",
                                           s3_config))
    assert response.audios[0].url and response.audios[0].duration == pytest.approx(11.0, abs=0.05)
    with pytest.raises(InputError, match="could not be read from the bucket"):
        asyncio.run(worker.generate({**JOB, "src_audio_url": f"s3://{bucket}/inputs/none.wav"}, "job-s3b", s3_config))
    with pytest.raises(InputError, match="read with the job's own bucket credentials: give s3Config"):
        asyncio.run(worker.generate({**JOB, "src_audio_url": f"s3://{bucket}/inputs/source.wav"}, "job-s3c"))
    # never with the operator's bucket: a caller must not read other objects (other users' songs) through it
    operator = worker_for(loaded, settings, allow_private_endpoints=True, bucket_endpoint_url=s3_server,
                          bucket_access_key_id="test-key", bucket_secret_access_key=SecretStr("test-secret-value"),
                          bucket_name=bucket)
    with pytest.raises(InputError, match="give s3Config"):
        asyncio.run(operator.generate({**JOB, "src_audio_url": f"s3://{bucket}/inputs/source.wav"}, "job-s3d"))
