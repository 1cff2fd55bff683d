"""The ACE-Step API over real HTTP, local backend (pod mode): ``python -m api_shim`` with the tiny checkpoint."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from tests.conftest import decode, silent_flac, start_shim, stop, wait_for_task, wav_bytes

ENVELOPE = {"data", "code", "error", "timestamp", "extra"}
RESULT_KEYS = {"file", "wave", "status", "create_time", "env", "prompt", "lyrics", "metas", "generation_info",
               "seed_value", "lm_model", "dit_model", "audio_codes", "progress", "stage"}
SONG = {"caption": "warm lofi piano, vinyl crackle", "lyrics": "[Verse]\nsoft rain on the window",
        "duration": 10, "batch_size": 2}


@pytest.fixture(scope="module")
def shim(checkpoint_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("shim") / "outputs"
    process, url = start_shim(checkpoint_dir, output, ACESTEP_MAX_BODY_BYTES="200000")
    try:
        yield url, output
    finally:
        stop(process)


def submit(url: str, body: dict, **kwargs) -> str:
    response = requests.post(f"{url}/release_task", json=body, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "queued" and data["queue_position"] >= 1
    return data["task_id"]


def assert_error(response: requests.Response, status: int, *words: str) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert ENVELOPE <= set(body) and body["code"] == status
    assert body["error"] == body["detail"] and "\n" not in body["error"]
    for word in words:
        assert word in body["error"], body["error"]
    return body


def test_health_and_models(shim):
    url, _ = shim
    response = requests.get(f"{url}/health", timeout=5)
    body = response.json()
    assert response.status_code == 200 and set(body) == ENVELOPE and body["code"] == 200
    assert body["data"] == {"status": "ok", "service": "ACE-Step API", "version": "1.0", "models_loaded": True,
                            "models_initialized": True, "llm_initialized": False, "loaded_model": "acestep-v15-turbo",
                            "loaded_lm_model": None, "backend": "local"}
    models = requests.get(f"{url}/v1/models", timeout=5).json()["data"]
    assert models["default_model"] == "acestep-v15-turbo"
    assert models["models"][0]["is_loaded"] and "text2music" in models["models"][0]["task_types"]
    assert requests.get(f"{url}/docs", timeout=5).status_code == 200
    paths = requests.get(f"{url}/openapi.json", timeout=5).json()["paths"]
    assert {"/health", "/v1/models", "/release_task", "/query_result", "/format_input", "/v1/audio",
            "/v1/stats"} <= set(paths)


def test_release_poll_download_and_decode(shim):
    url, output = shim
    task_id = submit(url, {**SONG, "audio_format": "wav", "seed": "11,12", "use_random_seed": False})
    item = wait_for_task(url, task_id)
    assert item["status"] == 1 and item["task_id"] == task_id
    results = json.loads(item["result"])  # a JSON string holding a list
    assert len(results) == 2
    for result in results:
        assert set(result) == RESULT_KEYS
        assert result["status"] == 1 and result["stage"] == "succeeded" and result["seed_value"] == "11,12"
        assert result["prompt"] == SONG["caption"] and result["metas"]["prompt"] == SONG["caption"]
        assert result["metas"]["duration"] == 10 and result["dit_model"] == "acestep-v15-turbo"
        assert result["file"].startswith("/v1/audio?path=")
        assert task_id not in result["file"]  # a fresh name, not the task id
        audio = requests.get(url + result["file"], timeout=30)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        samples, rate = decode(audio.content)
        assert rate == 48000 and samples.shape == (480000, 2)
    assert len(list((output / "api_audio").glob("*.wav"))) >= 2  # where upstream writes it


def test_mp3_by_default_and_result_while_running(shim):
    url, _ = shim
    task_id = submit(url, {**SONG, "duration": 30, "batch_size": 1})
    item = requests.post(f"{url}/query_result", json={"task_id_list": [task_id]}, timeout=5).json()["data"][0]
    if item["status"] == 0:  # still going: one object, no file, with progress and stage
        [running] = json.loads(item["result"])
        assert running["file"] == "" and running["status"] == 0 and 0 <= running["progress"] <= 1
        assert running["stage"] and item["progress_text"]
    item = wait_for_task(url, task_id)
    [result] = json.loads(item["result"])
    audio = requests.get(url + result["file"], timeout=30)
    assert audio.headers["content-type"] == "audio/mpeg"
    samples, rate = decode(audio.content)
    assert rate == 48000 and abs(samples.shape[0] / rate - 30) < 0.1


def test_query_aliases_and_unknown_ids(shim):
    url, _ = shim
    task_id = submit(url, SONG)
    wait_for_task(url, task_id)
    as_string = requests.post(f"{url}/query_result", json={"task_id_list": json.dumps([task_id])}, timeout=5)
    alias = requests.post(f"{url}/query_result", json={"task_ids": [task_id, "no-such-task"]}, timeout=5)
    assert as_string.json()["data"][0]["status"] == 1
    known, unknown = alias.json()["data"]
    assert known["status"] == 1 and unknown["task_id"] == "no-such-task" and unknown["status"] == 2
    [failed] = json.loads(unknown["result"])
    assert failed["stage"] == "failed" and "unknown task_id" in failed["error"]
    assert requests.post(f"{url}/query_result", json={}, timeout=5).json()["data"] == []  # upstream: nothing asked
    assert_error(requests.post(f"{url}/query_result", json={"task_id_list": {"a": 1}}, timeout=5), 400,
                 "task_id_list")


def test_bad_requests_get_clear_errors_in_the_envelope(shim):
    url, _ = shim
    assert_error(requests.post(f"{url}/release_task", data=b'{"caption": "x",', timeout=5), 400, "not valid JSON")
    assert_error(requests.post(f"{url}/release_task", json=[1, 2], timeout=5), 400, "JSON object")
    assert_error(requests.post(f"{url}/release_task", json={"caption": "x", "duration": 9000}, timeout=5), 400,
                 "audio_duration", "600")
    assert_error(requests.post(f"{url}/release_task", json={"caption": "x", "audio_format": "aac"}, timeout=5), 400,
                 "audio_format")
    assert_error(requests.post(f"{url}/release_task", json={}, timeout=5), 400, "empty")
    assert_error(requests.get(f"{url}/no/such/route", timeout=5), 404, "/no/such/route")
    assert_error(requests.get(f"{url}/release_task", timeout=5), 405, "GET")
    # the worker keeps serving after all of that
    assert wait_for_task(url, submit(url, SONG))["status"] == 1


def test_oversized_body_is_refused_with_413(shim):
    url, _ = shim
    big = {"caption": "x", "src_audio_base64": "A" * 300_000, "task_type": "cover"}
    assert_error(requests.post(f"{url}/release_task", json=big, timeout=10), 413, "ACESTEP_MAX_BODY_BYTES")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b" " * 10_000
    assert_error(requests.post(f"{url}/release_task", data=chunks(), timeout=10), 413, "larger than")


def test_an_audio_bomb_is_refused_at_submit_before_it_is_queued(shim):
    url, _ = shim
    bomb = base64.b64encode(silent_flac(3600, rate=8_000)).decode()  # ~90 KB of FLAC, an hour of audio
    before = requests.get(f"{url}/v1/stats", timeout=5).json()["data"]["jobs"]["total"]
    response = requests.post(f"{url}/release_task", json={"caption": "x", "task_type": "cover",
                                                          "src_audio_base64": bomb}, timeout=30)
    assert_error(response, 400, "src_audio_base64 must be at most 600 seconds long (got 3600)")
    assert requests.get(f"{url}/v1/stats", timeout=5).json()["data"]["jobs"]["total"] == before


def test_format_input_without_the_lm_says_so(shim):
    url, _ = shim
    assert_error(requests.post(f"{url}/format_input", json={"caption": "x"}, timeout=5), 501, "5 Hz LM")
    assert_error(requests.post(f"{url}/format_input", json={"caption": "x", "param_obj": {"bpm": 999}}, timeout=5),
                 400, "bpm")


def test_stats_count_jobs(shim):
    url, _ = shim
    before = requests.get(f"{url}/v1/stats", timeout=5).json()["data"]
    wait_for_task(url, submit(url, SONG))
    after = requests.get(f"{url}/v1/stats", timeout=5).json()["data"]
    assert after["jobs"]["total"] == before["jobs"]["total"] + 1
    assert after["jobs"]["succeeded"] == before["jobs"]["succeeded"] + 1
    assert after["queue_maxsize"] == 200 and after["queue_size"] == 0 and after["avg_job_seconds"] > 0


def _raw_get(url: str, target: str) -> int:
    """Send the request line exactly as written (no client-side normalisation of '..' or '%2e')."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_audio_path_traversal_is_refused(shim, tmp_path):
    url, output = shim
    [result] = json.loads(wait_for_task(url, submit(url, {**SONG, "batch_size": 1}))["result"])
    real_file = result["file"].split("path=", 1)[1]
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(b"not yours")
    (output / "link.mp3").symlink_to(secret)
    (output / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    forbidden = [
        f"/v1/audio?path={output}/../secret.mp3",
        f"/v1/audio?path={output}/%2e%2e/%2e%2e/etc/passwd",
        f"/v1/audio?path={output}%2F..%2F..%2Fetc%2Fpasswd",
        f"/v1/audio?path={output}/link.mp3",
        f"/v1/audio?path={output}/linkdir/secret.mp3",
        "/v1/audio?path=/etc/passwd",
        f"/v1/audio?path={secret}",
        "/v1/audio?path=relative/song.mp3",
        f"/v1/audio?path={output}/tasks.sqlite3",
        f"/v1/audio?path={output}",
    ]
    for target in forbidden:
        assert _raw_get(url, target) == 403, target
    assert _raw_get(url, f"/v1/audio?path={output}/missing.mp3") == 404
    assert _raw_get(url, f"/v1/audio?path={real_file}") == 200


def test_range_requests(shim):
    url, _ = shim
    [result] = json.loads(wait_for_task(url, submit(url, {**SONG, "batch_size": 1}))["result"])
    whole = requests.get(url + result["file"], timeout=30).content
    part = requests.get(url + result["file"], headers={"Range": "bytes=100-1099"}, timeout=30)
    assert part.status_code == 206 and part.content == whole[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    tail = requests.get(url + result["file"], headers={"Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole[-10:]


def test_health_and_polls_answer_while_a_song_is_made(shim):
    url, _ = shim
    task_id = submit(url, {**SONG, "duration": 120, "batch_size": 4})
    seen_running = False
    while True:
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        item = requests.post(f"{url}/query_result", json={"task_id_list": [task_id]}, timeout=5).json()["data"][0]
        if item["status"] != 0:
            break
        seen_running |= json.loads(item["result"])[0]["stage"] != "queued"
        time.sleep(0.05)
    assert item["status"] == 1 and seen_running


def test_health_says_starting_until_the_model_is_loaded(checkpoint_dir, tmp_path):
    process, url = start_shim(checkpoint_dir, tmp_path / "out", wait_ready=False)
    try:
        first = requests.get(f"{url}/health", timeout=5)
        assert first.status_code == 503 and first.json()["data"]["status"] == "starting"
        assert first.json()["data"]["models_loaded"] is False and "loading" in first.json()["error"]
        assert_error(requests.post(f"{url}/release_task", json=SONG, timeout=5), 503, "loading")
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop(process)


def test_missing_checkpoint_shows_on_health(tmp_path):
    process, url = start_shim(tmp_path / "nothing-here", tmp_path / "out", wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        while (body := requests.get(f"{url}/health", timeout=5).json())["data"]["status"] == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert body["code"] == 503 and body["data"]["status"] == "unavailable"
        assert "acestep-v15-turbo" in body["error"] and "builder" in body["error"]
        assert_error(requests.post(f"{url}/release_task", json=SONG, timeout=5), 503, "could not be loaded")
    finally:
        stop(process)


def test_a_full_queue_answers_429(checkpoint_dir, tmp_path):
    process, url = start_shim(checkpoint_dir, tmp_path / "out", ACESTEP_QUEUE_MAXSIZE="1")
    try:
        long_song = {**SONG, "duration": 120, "batch_size": 4}
        # ACESTEP_JOB_CONCURRENCY (4 in pod mode) tasks are in flight, one more may wait, the next is refused
        answers = [requests.post(f"{url}/release_task", json=long_song, timeout=30) for _ in range(8)]
        codes = [a.status_code for a in answers]
        assert codes.count(200) >= 1 and 429 in codes, codes
        refused = answers[codes.index(429)]
        assert_error(refused, 429, "queue is full")
        assert refused.headers["retry-after"]
    finally:
        stop(process)


def test_audio_inputs_of_waiting_tasks_are_bounded_in_bytes(checkpoint_dir, tmp_path):
    source = wav_bytes(10 * 8_000, rate=8_000)  # 160,044 bytes
    with_audio = {**SONG, "batch_size": 1, "task_type": "repaint", "repainting_start": 2, "repainting_end": 6,
                  "src_audio_base64": base64.b64encode(source).decode()}
    process, url = start_shim(checkpoint_dir, tmp_path / "out", ACESTEP_JOB_CONCURRENCY="1",
                              ACESTEP_QUEUE_MAX_BYTES="250000")
    try:
        blocker = submit(url, {**SONG, "duration": 120, "batch_size": 4})  # the one task in flight
        waiting = submit(url, with_audio)  # waits behind it, holding 160 KB of audio
        refused = requests.post(f"{url}/release_task", json=with_audio, timeout=30)
        assert_error(refused, 429, "queue is full", f"this one brings {len(source)}", "ACESTEP_QUEUE_MAX_BYTES")
        assert refused.headers["retry-after"]
        submit(url, {**SONG, "batch_size": 1})  # a task without audio inputs still gets in
        assert wait_for_task(url, blocker)["status"] == 1
        deadline = time.monotonic() + 60
        while json.loads(requests.post(f"{url}/query_result", json={"task_id_list": [waiting]},
                                       timeout=5).json()["data"][0]["result"])[0]["stage"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        submit(url, with_audio)  # the waiting task has the GPU now: its audio no longer counts
    finally:
        stop(process)


def test_api_key(checkpoint_dir, tmp_path):
    process, url = start_shim(checkpoint_dir, tmp_path / "out", ACESTEP_API_KEY="s3cret-key")
    good = {"Authorization": "Bearer s3cret-key"}
    try:
        assert requests.get(f"{url}/health", timeout=5).status_code == 200  # open, for load balancers
        for method, path in [("get", "/v1/models"), ("get", "/v1/stats"), ("post", "/release_task"),
                             ("post", "/query_result"), ("post", "/format_input"), ("get", "/v1/audio?path=/x.mp3")]:
            assert_error(getattr(requests, method)(f"{url}{path}", json={"caption": "x"}, timeout=5), 401, "API key")
            wrong = getattr(requests, method)(f"{url}{path}", json={"caption": "x"}, timeout=5,
                                              headers={"Authorization": "Bearer s3cret-kez"})
            assert wrong.status_code == 401 and "s3cret" not in wrong.text
        task_id = submit(url, SONG, headers=good)
        by_token = requests.post(f"{url}/query_result", json={"task_id_list": [task_id], "ai_token": "s3cret-key"},
                                 timeout=5)
        assert by_token.status_code == 200
        [result] = json.loads(wait_for_task(url, task_id, headers=good)["result"])[:1]
        assert requests.get(url + result["file"], timeout=10).status_code == 401
        assert requests.get(url + result["file"], headers=good, timeout=10).status_code == 200
    finally:
        stop(process)


def test_tasks_survive_the_server_killed_mid_job(checkpoint_dir, tmp_path):
    output = tmp_path / "out"
    process, url = start_shim(checkpoint_dir, output)
    try:
        done_id = submit(url, {**SONG, "batch_size": 1})
        done = wait_for_task(url, done_id)
        cut_ids = [submit(url, {**SONG, "duration": 120, "batch_size": 4}) for _ in range(2)]
    finally:
        process.kill()  # mid-job, without a chance to clean up: as a crash or an OOM kill would
        process.wait()
    process, url = start_shim(checkpoint_dir, output)
    try:
        again = requests.post(f"{url}/query_result", json={"task_id_list": [done_id, *cut_ids]}, timeout=5)
        finished, *cut = again.json()["data"]
        assert finished == done
        [result] = json.loads(finished["result"])
        samples, rate = decode(requests.get(url + result["file"], timeout=30).content)
        assert rate == 48000 and samples.shape[0] == 480000
        for item in cut:  # interrupted by the restart: failed, with the reason, never 'queued' forever
            assert item["status"] == 2 and "restarted" in json.loads(item["result"])[0]["error"]
    finally:
        stop(process)



def test_compatible_tasks_waiting_for_the_gpu_render_as_one_batch(shim):
    url, output = shim
    busy = submit(url, {**SONG, "duration": 40, "batch_size": 2})  # holds the GPU thread for a while
    same = [submit(url, {**SONG, "duration": 12, "batch_size": 1, "seed": seed}) for seed in (1, 2, 3)]
    items = [wait_for_task(url, task_id) for task_id in [busy, *same]]
    assert all(item["status"] == 1 for item in items)
    for item in items[1:]:
        [song] = json.loads(item["result"])
        assert decode(requests.get(url + song["file"], timeout=30).content)[0].shape[0] == 12 * 48_000
    [log] = output.parent.glob("shim-*.log")
    assert "rendered 3 jobs in one batch" in log.read_text()
