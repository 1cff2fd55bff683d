"""The runpod backend end to end: the shim → a stand-in for RunPod's queue (tests/runpod_standin.py) → a real
``python handler.py`` worker whose RunPod SDK job loop takes the jobs → audio in a real S3-compatible server
(moto) → streamed back through the shim's ``/v1/audio``. RunPod's own SDK client (``runpod.Endpoint``) is
driven against the same stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, decode, free_port, s3_client, start_shim, stop, wait_for_task, worker_env
from tests.runpod_standin import RunPodStandIn, ServerThread

ENDPOINT, CLIENT_KEY, WORKER_KEY = "ep-test", "client-key-123", "worker-key-456"
SONG = {"caption": "bright synthpop, punchy drums", "lyrics": "[Chorus]\nlights on", "duration": 10,
        "batch_size": 2, "seed": "5,6", "use_random_seed": False}


@pytest.fixture(scope="module")
def standin():
    service = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)
    port = free_port()
    with ServerThread(service.app, port):
        service.url = f"http://127.0.0.1:{port}"
        yield service


@pytest.fixture(scope="module")
def s3_bucket(s3_server):
    s3_client(s3_server).create_bucket(Bucket="runpod-songs")
    return "runpod-songs"


def start_worker(standin: RunPodStandIn, checkpoint_dir, log_path, **extra: str) -> subprocess.Popen:
    """``python handler.py`` as RunPod starts it: the SDK's job loop pulls from the queue's worker endpoints."""
    base = f"{standin.url}/v2/{ENDPOINT}"
    env = worker_env(
        checkpoint_dir, RUNPOD_POD_ID="worker-1", RUNPOD_AI_API_KEY=WORKER_KEY,
        RUNPOD_WEBHOOK_GET_JOB=f"{base}/job-take/$ID?gpu=cpu",
        RUNPOD_WEBHOOK_POST_OUTPUT=f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu", ACESTEP_WARMUP="0", **extra)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "handler.py"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    process.log_path = log_path
    return process


@pytest.fixture(scope="module")
def worker(standin, checkpoint_dir, s3_server, s3_bucket, tmp_path_factory):
    process = start_worker(standin, checkpoint_dir, tmp_path_factory.mktemp("rp-worker") / "worker.log",
                           BUCKET_ENDPOINT_URL=s3_server, BUCKET_ACCESS_KEY_ID="test-key",
                           BUCKET_SECRET_ACCESS_KEY="test-secret-value", BUCKET_NAME=s3_bucket,
                           ACESTEP_MAX_BATCH_SIZE="4")
    try:
        yield process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def shim(standin, worker, checkpoint_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("rp-shim") / "outputs"
    # the worker's bucket (moto) is on loopback: this shim's operator allows fetching from private addresses
    env = dict(RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=CLIENT_KEY, ACESTEP_ALLOW_PRIVATE_ENDPOINTS="1",
               RUNPOD_ENDPOINT_BASE_URL=f"{standin.url}/v2", ACESTEP_RUNPOD_BACKOFF="0.05", ACESTEP_RUNPOD_TIMEOUT="2")
    process, url = start_shim(checkpoint_dir, output, **env)
    try:
        yield url, output, env
    finally:
        stop(process)


def test_health_comes_from_the_endpoint_and_models_wake_no_worker(shim, standin):
    url, _, _ = shim
    health = requests.get(f"{url}/health", timeout=10).json()["data"]
    assert health["status"] == "ok" and health["backend"] == "runpod"
    jobs = len(standin.jobs)
    for _ in range(3):  # a client polling /v1/models must not bill a GPU job each time
        models = requests.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert models["default_model"] == "acestep-v15-turbo" and models["models"][0]["is_loaded"]
        assert models["models"][0]["task_types"] == ["text2music", "repaint", "cover"]  # a turbo model
    assert len(standin.jobs) == jobs and standin.calls["POST runsync"] == 0


def test_song_through_runpod_and_the_bucket(shim, standin, s3_server, s3_bucket):
    url, _, _ = shim
    response = requests.post(f"{url}/release_task", json=SONG, timeout=30)
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["task_id"]
    item = wait_for_task(url, task_id, timeout=180)
    assert item["status"] == 1, item
    results = json.loads(item["result"])
    assert len(results) == 2 and results[0]["seed_value"] == "5,6"
    keys = [o["Key"] for o in s3_client(s3_server).list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert len(keys) >= 2 and all(k.startswith("acestep/") and k.endswith(".mp3") for k in keys)
    for result in results:
        assert result["file"].startswith("/v1/audio?path=")  # the upstream form, though the audio is in S3
        audio = requests.get(url + result["file"], timeout=60)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        samples, rate = decode(audio.content)
        assert rate == 48000 and abs(samples.shape[0] / rate - 10) < 0.1
        part = requests.get(url + result["file"], headers={"Range": "bytes=0-99"}, timeout=60)
        assert part.status_code == 206 and part.content == audio.content[:100]


def test_by_default_the_shim_fetches_bucket_audio_only_from_public_addresses(shim, checkpoint_dir, tmp_path):
    # a worker result names where its audio is; the shim must not be steered into its own network by it
    _, _, env = shim
    guarded = {k: v for k, v in env.items() if k != "ACESTEP_ALLOW_PRIVATE_ENDPOINTS"}
    process, url = start_shim(checkpoint_dir, tmp_path / "out", **guarded)
    try:
        task_id = requests.post(f"{url}/release_task", json={**SONG, "batch_size": 1}, timeout=30).json()["data"][
            "task_id"]
        item = wait_for_task(url, task_id, timeout=180)
        assert item["status"] == 1, item
        [result] = json.loads(item["result"])
        audio = requests.get(url + result["file"], timeout=60)
        assert audio.status_code == 502 and "must point to a public address" in audio.json()["error"]
    finally:
        stop(process)


def test_a_bucket_url_that_redirects_is_not_followed(shim, standin):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    hits = []

    class Internal(BaseHTTPRequestHandler):  # stands for a service inside the shim's network
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args):
            pass

    internal = ThreadingHTTPServer(("127.0.0.1", 0), Internal)

    class Redirecting(BaseHTTPRequestHandler):  # a "bucket" that sends the shim elsewhere
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{internal.server_address[1]}/admin")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    bucket = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (internal, bucket):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url, _, _ = shim
        output = {"audios": [{"url": f"http://127.0.0.1:{bucket.server_address[1]}/song.mp3", "format": "mp3",
                              "seed": 1}], "dit_model": "acestep-v15-turbo", "metas": {}, "timings": {}}
        requests.post(f"{standin.url}/_standin/complete_next", json={"output": output}, timeout=5)
        task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
        item = wait_for_task(url, task_id, timeout=30)
        [result] = json.loads(item["result"])
        audio = requests.get(url + result["file"], timeout=30)
        assert audio.status_code == 502 and "redirect, which is not followed" in audio.json()["error"]
        assert hits == []  # the internal service never heard from the shim
    finally:
        for server in (internal, bucket):
            server.shutdown()


def test_results_outlive_runpods_memory_and_a_shim_restart(shim, standin, checkpoint_dir):
    url, output, env = shim
    task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
    done = wait_for_task(url, task_id, timeout=180)
    requests.post(f"{standin.url}/_standin/forget", timeout=5)  # RunPod drops results after 30 minutes
    again = requests.post(f"{url}/query_result", json={"task_id_list": [task_id]}, timeout=10).json()["data"][0]
    assert again == done
    process, url2 = start_shim(checkpoint_dir, output, **env)
    try:
        after_restart = requests.post(f"{url2}/query_result", json={"task_id_list": [task_id]}, timeout=10)
        assert after_restart.json()["data"][0] == done
        [first, _] = json.loads(done["result"])
        assert decode(requests.get(url2 + first["file"], timeout=60).content)[1] == 48000
    finally:
        stop(process)


def test_the_workers_own_limits_are_learned_and_then_checked_before_a_job_is_made(shim, checkpoint_dir, tmp_path):
    _, _, env = shim
    process, url = start_shim(checkpoint_dir, tmp_path / "out", **env)  # a shim that has heard from no worker yet
    try:
        # valid for some deployment (a base model takes 200 steps): sent, and the turbo worker says why not
        first = requests.post(f"{url}/release_task", json={**SONG, "inference_steps": 50}, timeout=30)
        assert first.status_code == 200, first.text
        item = wait_for_task(url, first.json()["data"]["task_id"], timeout=120)
        assert item["status"] == 2
        assert "inference_steps must be between 1 and 20 on turbo models" in json.loads(item["result"])[0]["error"]
        good = requests.post(f"{url}/release_task", json={**SONG, "batch_size": 1}, timeout=30).json()["data"]
        assert wait_for_task(url, good["task_id"], timeout=180)["status"] == 1  # its output carries the limits
        for refused, words in (({"inference_steps": 50}, "inference_steps must be between 1 and 20 on turbo models"),
                               ({"batch_size": 6}, "batch_size must be between 1 and 4 on this GPU"),
                               ({"task_type": "lego", "src_audio_base64": "AAAA"}, "needs a base or sft model")):
            answer = requests.post(f"{url}/release_task", json={**SONG, **refused}, timeout=30)
            assert answer.status_code == 400 and words in answer.json()["error"], answer.text
        models = requests.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert models["models"][0]["task_types"] == ["text2music", "repaint", "cover"]
    finally:
        stop(process)


def test_contract_refusals_cost_no_job_and_a_worker_without_the_lm_says_so(shim):
    url, _, _ = shim
    # the shim refuses what the contract forbids before it costs a job
    bad = requests.post(f"{url}/release_task", json={**SONG, "bpm": 900}, timeout=30)
    assert bad.status_code == 400 and "bpm" in bad.json()["error"]
    # format_input is a runsync job; this worker has no LM, and says so
    fmt = requests.post(f"{url}/format_input", json={"caption": "x"}, timeout=120)
    assert fmt.status_code == 502 and "LM" in fmt.json()["error"]


def test_a_body_runpod_would_refuse_is_refused_at_once(shim, standin):
    url, _, _ = shim
    jobs = len(standin.jobs)
    # about 10.5 MB: under ACESTEP_MAX_BODY_BYTES (48 MiB), over RunPod's /run payload limit
    big = json.dumps({**SONG, "task_type": "cover", "src_audio_base64": "A" * 10_500_000})
    answer = requests.post(f"{url}/release_task", data=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413 and "RunPod's /run payload limit" in answer.json()["error"]
    assert len(standin.jobs) == jobs  # no job was made, nothing was billed


def test_a_429_on_run_is_retried_and_a_5xx_is_not_so_no_job_is_made_twice(shim, standin):
    url, _, _ = shim
    before = standin.calls["injected 429"]
    requests.post(f"{standin.url}/_standin/fail_next", json={"route": "run", "statuses": [429, 429]}, timeout=5)
    response = requests.post(f"{url}/release_task", json=SONG, timeout=60)
    assert response.status_code == 200, response.text  # RunPod refused twice: provably no job, so sent again
    assert standin.calls["injected 429"] == before + 2
    assert wait_for_task(url, response.json()["data"]["task_id"], timeout=180)["status"] == 1

    runs = standin.calls["POST run"]
    requests.post(f"{standin.url}/_standin/fail_next", json={"route": "run", "statuses": [503]}, timeout=5)
    response = requests.post(f"{url}/release_task", json=SONG, timeout=60)
    assert response.status_code == 502 and "may have created the job" in response.json()["error"]
    assert standin.calls["POST run"] == runs + 1  # not sent again
    assert CLIENT_KEY not in response.text


def test_a_timeout_after_runpod_took_the_job_is_not_retried(shim, standin):
    url, _, _ = shim
    jobs = len(standin.jobs)
    requests.post(f"{standin.url}/_standin/hang_next", json={"route": "run", "seconds": 4}, timeout=5)
    response = requests.post(f"{url}/release_task", json={**SONG, "batch_size": 1}, timeout=60)
    assert response.status_code == 504 and "it may have created the job" in response.json()["error"]
    assert len(standin.jobs) == jobs + 1  # one job, not one per retry


def test_status_errors_are_retried_in_the_background(shim, standin):
    url, _, _ = shim
    task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
    requests.post(f"{standin.url}/_standin/fail_next", json={"route": "status", "statuses": [503, 500, 429]},
                  timeout=5)
    assert wait_for_task(url, task_id, timeout=180)["status"] == 1


def test_runpod_unreachable_is_a_clear_error_after_retries(shim, checkpoint_dir, tmp_path):
    _, _, env = shim
    closed = f"http://127.0.0.1:{free_port()}/v2"  # nothing listens: the connection is never made
    process, url = start_shim(checkpoint_dir, tmp_path / "out", wait_ready=False,
                              **{**env, "RUNPOD_ENDPOINT_BASE_URL": closed})
    try:
        response = requests.post(f"{url}/release_task", json=SONG, timeout=60)
        assert response.status_code == 502
        assert "after 5 attempt(s): could not connect (ConnectError)" in response.json()["error"]
        assert CLIENT_KEY not in response.text
    finally:
        stop(process)


def test_a_task_is_followed_and_kept_without_any_client_asking_runpod(shim, standin):
    url, _, _ = shim
    task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
    # polling /query_result only reads the shim's store: the shim itself follows the job at RunPod
    done = wait_for_task(url, task_id, timeout=180)
    requests.post(f"{standin.url}/_standin/forget", timeout=5)  # RunPod drops results after 30 minutes
    item = requests.post(f"{url}/query_result", json={"task_id_list": [task_id]}, timeout=10).json()["data"][0]
    assert item == done and item["status"] == 1 and len(json.loads(item["result"])) == 2


def test_status_calls_are_bounded_however_many_tasks_and_ids_are_polled(checkpoint_dir, tmp_path):
    idle = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)  # no worker: every task stays queued
    idle.status_delay_s = 0.5  # a slow RunPod: checks overlap
    port = free_port()
    with ServerThread(idle.app, port):
        env = dict(RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=CLIENT_KEY,
                   RUNPOD_ENDPOINT_BASE_URL=f"http://127.0.0.1:{port}/v2", ACESTEP_RUNPOD_BACKOFF="0.05")
        process, url = start_shim(checkpoint_dir, tmp_path / "out", **env)
        try:
            ids = [requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
                   for _ in range(20)]
            time.sleep(4)  # every task checked at least once
            before = idle.calls["GET status"]
            answer = requests.post(f"{url}/query_result", json={"task_id_list": ids * 25}, timeout=10)
            assert answer.status_code == 200 and len(answer.json()["data"]) == 500
            assert idle.calls["GET status"] - before <= 20  # the background round at most, never one per id
            assert 1 < idle.status_most_in_flight <= 8
        finally:
            stop(process)


def test_the_shim_killed_and_restarted_picks_its_tasks_up_again_even_past_their_timeout(shim, standin,
                                                                                        checkpoint_dir, tmp_path):
    _, _, env = shim
    env = {**env, "ACESTEP_TASK_TIMEOUT": "10"}
    output = tmp_path / "out"
    process, url = start_shim(checkpoint_dir, output, **env)
    submitted = time.monotonic()
    task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
    process.kill()  # no shutdown: as a crash or an OOM kill would
    process.wait()
    remote = next(reversed(standin.jobs))
    while standin.jobs[remote]["status"] != "COMPLETED" or time.monotonic() - submitted < 11:
        assert time.monotonic() - submitted < 180
        time.sleep(0.2)  # the job finishes while the shim is down, and the task is past ACESTEP_TASK_TIMEOUT
    process, url = start_shim(checkpoint_dir, output, **env)
    try:
        item = wait_for_task(url, task_id, timeout=60)
        assert item["status"] == 1, item  # RunPod still had the result: it is kept, not expired
        [first, _] = json.loads(item["result"])
        assert decode(requests.get(url + first["file"], timeout=60).content)[1] == 48000
    finally:
        stop(process)


def test_a_worker_killed_mid_job_ends_the_task_with_a_reason_and_a_new_worker_serves(checkpoint_dir, tmp_path):
    own = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)
    port = free_port()
    with ServerThread(own.app, port):
        own.url = f"http://127.0.0.1:{port}"
        env = dict(RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=CLIENT_KEY, ACESTEP_TASK_TIMEOUT="20",
                   RUNPOD_ENDPOINT_BASE_URL=f"{own.url}/v2", ACESTEP_RUNPOD_BACKOFF="0.05")
        process, url = start_shim(checkpoint_dir, tmp_path / "out", **env)
        worker = start_worker(own, checkpoint_dir, tmp_path / "worker-1.log")
        try:
            long_song = {**SONG, "duration": 120, "batch_size": 1}
            task_id = requests.post(f"{url}/release_task", json=long_song, timeout=30).json()["data"]["task_id"]
            deadline = time.monotonic() + 120
            while not any(j["status"] == "IN_PROGRESS" for j in own.jobs.values()):
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.1)
            worker.kill()  # mid-job: its result will never come
            worker.wait()
            item = wait_for_task(url, task_id, timeout=60)
            assert item["status"] == 2
            assert "did not finish within 20 s (ACESTEP_TASK_TIMEOUT)" in json.loads(item["result"])[0]["error"]
            worker = start_worker(own, checkpoint_dir, tmp_path / "worker-2.log")  # RunPod starts another
            again = requests.post(f"{url}/release_task", json={**SONG, "batch_size": 1}, timeout=30)
            assert wait_for_task(url, again.json()["data"]["task_id"], timeout=180)["status"] == 1
        finally:
            stop(worker)
            stop(process)


def test_a_task_runpod_never_runs_expires_with_a_reason(checkpoint_dir, tmp_path):
    idle = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)  # an endpoint whose job no worker ever takes
    port = free_port()
    with ServerThread(idle.app, port):
        env = dict(RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=CLIENT_KEY, ACESTEP_TASK_TIMEOUT="10",
                   RUNPOD_ENDPOINT_BASE_URL=f"http://127.0.0.1:{port}/v2", ACESTEP_RUNPOD_BACKOFF="0.05")
        process, url = start_shim(checkpoint_dir, tmp_path / "out", **env)
        try:
            task_id = requests.post(f"{url}/release_task", json=SONG, timeout=30).json()["data"]["task_id"]
            item = wait_for_task(url, task_id, timeout=60)
            assert item["status"] == 2
            [failed] = json.loads(item["result"])
            assert failed["error"] == ("the task did not finish within 10 s (ACESTEP_TASK_TIMEOUT); its RunPod job "
                                       "was cancelled")
            [job] = idle.jobs.values()
            assert job["status"] == "CANCELLED"  # no worker will pick it up and bill it later
            stats = requests.get(f"{url}/v1/stats", timeout=10).json()["data"]
            assert stats["jobs"]["failed"] == 1 and stats["queue_size"] == 0
        finally:
            stop(process)


def test_runpod_sdk_endpoint_against_the_standin(standin, worker, s3_server):
    import runpod

    runpod.endpoint_url_base = f"{standin.url}/v2"
    endpoint = runpod.Endpoint(ENDPOINT, api_key=CLIENT_KEY)
    job = endpoint.run({**SONG, "audio_format": "flac"})
    output = job.output(timeout=180)
    assert job.status() == "COMPLETED"
    assert [a["seed"] for a in output["audios"]] == [5, 6]
    for audio in output["audios"]:
        assert audio["content_type"] == "audio/flac" and audio["key"].endswith(".flac")
        samples, rate = decode(requests.get(audio["url"], timeout=30).content)
        assert rate == 48000 and samples.shape == (480000, 2)
    assert endpoint.health()["jobs"]["completed"] >= 1
    failed = endpoint.run({"caption": "x", "duration": 5})
    failed.output(timeout=120)
    assert failed.status() == "FAILED"  # the handler's {"error"} fails the job, as on RunPod
    assert "audio_duration must be between 10" in failed._fetch_job()["error"]
