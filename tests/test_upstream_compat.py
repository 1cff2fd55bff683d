"""Upstream ACE-Step 1.5 clients, unchanged, against this shim: a table of upstream behaviours, over real HTTP, in
pod mode and in RunPod mode (shim → the RunPod stand-in → a real ``python handler.py`` worker).

Each row names the upstream file that defines the behaviour (``ace-step/ACE-Step-1.5``), sends what such a
client sends, and checks what a user would observe: the song's duration, the metadata echoed, the seeds used,
the file's format. Rows marked ``[ours]`` are where this project goes further than upstream, on purpose.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.conftest import decode, free_port, s3_client, start_shim, stop, wait_for_task
from tests.runpod_standin import RunPodStandIn, ServerThread
from tests.test_shim_runpod import CLIENT_KEY, ENDPOINT, WORKER_KEY, start_worker

BASE = {"caption": "upstream client", "lyrics": "[inst]", "inference_steps": 2, "batch_size": 1}
PARSER = "acestep/api/http/release_task_param_parser.py"
ROUTE = "acestep/api/http/release_task_request_parser.py"
BUILDER = "acestep/api/http/release_task_request_builder.py"
PAYLOAD = "acestep/api/job_result_payload.py"
SETUP = "acestep/api/job_generation_setup.py"


@pytest.fixture(scope="module")
def pod(checkpoint_dir, tmp_path_factory):
    process, url = start_shim(checkpoint_dir, tmp_path_factory.mktemp("compat-pod") / "out")
    try:
        yield url
    finally:
        stop(process)


@dataclass
class RunPodMode:
    url: str
    standin: RunPodStandIn
    staging_bucket: str


@pytest.fixture(scope="module")
def runpod_parts(checkpoint_dir, s3_server, tmp_path_factory):
    standin = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)
    port = free_port()
    folder = tmp_path_factory.mktemp("compat-runpod")
    with ServerThread(standin.app, port):
        standin.url = f"http://127.0.0.1:{port}"
        for name in ("compat-songs", "compat-inputs"):
            s3_client(s3_server).create_bucket(Bucket=name)
        worker = start_worker(standin, checkpoint_dir, folder / "worker.log", BUCKET_ENDPOINT_URL=s3_server,
                              BUCKET_ACCESS_KEY_ID="test-key", BUCKET_SECRET_ACCESS_KEY="test-secret-value",
                              BUCKET_NAME="compat-songs", ACESTEP_ALLOW_PRIVATE_ENDPOINTS="1")
        # the shim's own bucket, where audio inputs too big for a RunPod job's payload are passed through
        process, url = start_shim(checkpoint_dir, folder / "out", RUNPOD_ENDPOINT_ID=ENDPOINT, RUNPOD_API_KEY=CLIENT_KEY,
                                  RUNPOD_ENDPOINT_BASE_URL=f"{standin.url}/v2", ACESTEP_ALLOW_PRIVATE_ENDPOINTS="1",
                                  BUCKET_ENDPOINT_URL=s3_server, BUCKET_ACCESS_KEY_ID="test-key",
                                  BUCKET_SECRET_ACCESS_KEY="test-secret-value", BUCKET_NAME="compat-inputs")
        try:
            yield RunPodMode(url, standin, "compat-inputs")
        finally:
            stop(process)
            stop(worker)


@pytest.fixture(scope="module")
def runpod_mode(runpod_parts):
    return runpod_parts.url


@pytest.fixture(params=["pod", "runpod"])
def url(request):
    return request.getfixturevalue("pod" if request.param == "pod" else "runpod_mode")


def wav_file(seconds: float, rate: int = 44_100) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.random.default_rng(1).standard_normal(int(seconds * rate))).astype(np.float32), rate,
             format="WAV")
    return buffer.getvalue()


@dataclass
class Row:
    source: str
    name: str
    send: dict  # keyword arguments of requests.post to /release_task
    check: Callable[[dict, list[dict]], None]  # (release_task data, result items)


def duration_is(seconds: float):
    def check(data, items):
        for item in items:
            assert item["metas"]["duration"] == pytest.approx(seconds, abs=0.05), item["metas"]
    return check


def metas_are(**expected):
    def check(data, items):
        for key, value in expected.items():
            assert items[0]["metas"][key] == value, items[0]["metas"]
    return check


def all_of(*checks):
    def check(data, items):
        for one in checks:
            one(data, items)
    return check


def form_of(fields: dict) -> dict:
    return {key: json.dumps(value) if isinstance(value, (dict, list)) else str(value) for key, value in fields.items()}


ROWS = [
    Row(PARSER, "caption and duration aliases", {"json": {**BASE, "duration": 12}}, duration_is(12)),
    Row(PARSER, "camelCase names", {"json": {"caption": "x", "lyrics": "[inst]", "audioDuration": 11,
                                             "inferenceSteps": 2, "batchSize": 1}}, duration_is(11)),
    Row(PARSER, "targetDuration", {"json": {**BASE, "targetDuration": 13}}, duration_is(13)),
    Row(PARSER, "a top-level value beats param_obj's", {"json": {**BASE, "caption": "raw-caption",
                                                                 "param_obj": {"caption": "param-caption"}}},
        lambda d, items: assert_equal(items[0]["prompt"], "raw-caption")),
    Row(PARSER, "null is not a value: param_obj's is used", {"json": {**BASE, "caption": None,
                                                                      "param_obj": {"caption": "from-param"}}},
        lambda d, items: assert_equal(items[0]["prompt"], "from-param")),
    Row(PARSER, "param_obj as a JSON string", {"json": {**BASE, "param_obj": json.dumps({"duration": 12})}},
        duration_is(12)),
    Row(PARSER, "metas with camelCase inside", {"json": {**BASE, "duration": 10, "metas": {"keyScale": "C major",
                                                                                          "timeSignature": "3/4"}}},
        metas_are(keyscale="C major", timesignature="3")),
    Row(PARSER, "user_metadata container", {"json": {**BASE, "duration": 10, "user_metadata": {"bpm": 96}}},
        metas_are(bpm=96)),
    Row(PARSER, "userMetadata container as a JSON string", {"json": {**BASE, "duration": 10,
                                                                     "userMetadata": json.dumps({"bpm": 101})}},
        metas_are(bpm=101)),
    Row(PARSER, "[ours] key_scale short forms", {"json": {**BASE, "duration": 10, "key_scale": "C#m"}},
        metas_are(keyscale="C# minor")),
    Row(PARSER, "[ours] a flat key without its mode", {"json": {**BASE, "duration": 10, "keyscale": "Bb"}},
        metas_are(keyscale="Bb major")),
    Row(PAYLOAD, "metas nobody chose are N/A", {"json": {**BASE, "duration": 10}},
        metas_are(bpm="N/A", keyscale="N/A", timesignature="N/A", genres="N/A")),
    Row(SETUP, "seeds as a string with use_random_seed false",
        {"json": {**BASE, "duration": 10, "batch_size": 2, "seed": "12,13", "use_random_seed": False}},
        lambda d, items: assert_equal(items[0]["seed_value"], "12,13")),
    Row(SETUP, "lm_top_k 0 is accepted (off)", {"json": {**BASE, "duration": 10, "lm_top_k": 0}}, duration_is(10)),
    Row(SETUP, "audio_duration -1 is auto (the default length)", {"json": {**BASE, "audio_duration": -1}},
        duration_is(60)),
    Row("acestep/audio_utils.py", "wav32: 32-bit float WAV", {"json": {**BASE, "duration": 10,
                                                                       "audio_format": "wav32"}},
        lambda d, items: None),  # the file itself is checked in test_the_file_is_what_was_asked_for
    Row(ROUTE, "form-urlencoded body", {"data": form_of({**BASE, "duration": 11})}, duration_is(11)),
    Row(ROUTE, "multipart body without files", {"files": {k: (None, v) for k, v in form_of({**BASE, "duration": 12})
                                                         .items()}}, duration_is(12)),
    Row(ROUTE, "JSON without a content type", {"data": json.dumps({**BASE, "duration": 11}).encode(),
                                               "headers": {"Content-Type": ""}}, duration_is(11)),
    Row(ROUTE, "k=v without a content type", {"data": b"caption=x&lyrics=%5Binst%5D&duration=12&inference_steps=2"
                                                      b"&batch_size=1", "headers": {"Content-Type": ""}},
        duration_is(12)),
    Row(ROUTE, "a form's param_obj as a JSON string", {"data": form_of({**BASE, "param_obj": {"duration": 13}})},
        duration_is(13)),
    Row(ROUTE, "an uploaded source audio (ctx_audio) for a cover",
        {"data": form_of({**BASE, "task_type": "cover"}), "files": {"ctx_audio": ("src.wav", wav_file(11))}},
        duration_is(11)),
    Row(ROUTE, "an uploaded reference audio (ref_audio)",
        {"data": form_of({**BASE, "duration": 10}), "files": {"ref_audio": ("ref.wav", wav_file(3))}},
        duration_is(10)),
    Row(BUILDER, "the served model by name (dit_model)", {"json": {**BASE, "duration": 10,
                                                                   "dit_model": "acestep-v15-turbo"}},
        lambda d, items: assert_equal(items[0]["dit_model"], "acestep-v15-turbo")),
    Row("acestep/api/http/release_task_models.py", "an upstream field this worker lacks is a warning",
        {"json": {**BASE, "duration": 10, "use_adg": True, "samplerMode": "sde"}},
        lambda d, items: assert_equal(d["warnings"], ["not supported by this worker, ignored: sampler_mode, use_adg"])),
    Row("acestep/api/http/release_task_models.py", "DCW's fields in upstream's names",
        {"json": {**BASE, "duration": 10, "dcwEnabled": True, "dcwMode": "high", "dcw_scaler": 0.04}},
        lambda d, items: assert_equal(d["warnings"], [])),
    Row(SETUP, "a custom timesteps schedule as a string", {"json": {**BASE, "duration": 10,
                                                                    "timesteps": "0.97,0.76,0.4,0.1"}},
        duration_is(10)),
    Row("acestep/core/generation/handler/audio_codes.py", "audio codes given by the caller decide the length",
        {"json": {**BASE, "audio_code_string": "<|audio_code_17|><|audio_code_900|>" * 30}}, duration_is(12)),
    Row(BUILDER, "audio_codes (alias) for a cover in place of a source audio",
        {"json": {**BASE, "task_type": "cover", "audio_codes": "<|audio_code_3|>" * 55}}, duration_is(11)),
    Row("acestep/api/http/release_task_models.py", "the LM's switches are fields, not unsupported extras",
        {"json": {**BASE, "duration": 10, "constrained_decoding": True, "use_cot_caption": False,
                  "cot_language": False, "lm_repetition_penalty": 1.1}},
        lambda d, items: assert_equal(d["warnings"], [])),
]


def assert_equal(got, expected):
    assert got == expected


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_upstream_behaviour(url, row):
    answer = requests.post(f"{url}/release_task", timeout=60, **row.send)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    item = wait_for_task(url, data["task_id"], timeout=180)
    assert item["status"] == 1, item
    row.check(data, json.loads(item["result"]))


REFUSALS = [
    (ROUTE, "text/plain that is neither JSON nor a form is 415",
     {"data": b"hello world", "headers": {"Content-Type": "text/plain"}}, 415, "Unsupported Content-Type: text/plain"),
    ("acestep/audio_utils.py", "[ours] aac is refused, naming the field, not silently replaced",
     {"json": {**BASE, "audio_format": "aac"}}, 400, "audio_format 'aac' is not produced by this worker"),
    (BUILDER, "[ours] another model's name is refused, naming the one served",
     {"json": {**BASE, "model": "acestep-v15-base"}}, 400, "model must be 'acestep-v15-turbo'"),
    (ROUTE, "[ours] an uploaded file that is not an audio input is refused, not dropped",
     {"data": form_of(BASE), "files": {"lyrics_file": ("a.txt", b"x")}}, 400, "is not an audio input"),
    (ROUTE, "an upload under ref_audio is read as the reference (not audio: refused naming it)",
     {"data": form_of(BASE), "files": {"ref_audio": ("ref.wav", b"not audio")}}, 400,
     "reference_audio_base64 is not an audio file"),
    (BUILDER, "[ours] dit_model naming another model is refused",
     {"json": {**BASE, "dit_model": "acestep-v15-base"}}, 400, "model must be 'acestep-v15-turbo'"),
    (ROUTE, "a JSON integer too long to read is a 400, not a 500",
     {"data": b'{"caption": "x", "bpm": ' + b"1" * 5000 + b"}", "headers": {"Content-Type": "application/json"}},
     400, "not valid JSON"),
]


@pytest.mark.parametrize("source, name, send, status, words", REFUSALS, ids=[r[1] for r in REFUSALS])
def test_upstream_refusal(url, source, name, send, status, words):
    answer = requests.post(f"{url}/release_task", timeout=60, **send)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_the_file_is_what_was_asked_for(url):
    answer = requests.post(f"{url}/release_task", json={**BASE, "duration": 10, "audio_format": "wav32"}, timeout=60)
    item = wait_for_task(url, answer.json()["data"]["task_id"], timeout=180)
    [result] = json.loads(item["result"])
    audio = requests.get(url + result["file"], timeout=60)
    assert audio.headers["content-type"] == "audio/wav"
    assert sf.info(io.BytesIO(audio.content)).subtype == "FLOAT"
    samples, rate = decode(audio.content)
    assert rate == 48_000 and samples.shape == (480_000, 2)


def test_query_result_and_format_input_as_forms_and_empty_lists(url):
    task_id = requests.post(f"{url}/release_task", json={**BASE, "duration": 10}, timeout=60).json()["data"]["task_id"]
    wait_for_task(url, task_id, timeout=180)
    as_form = requests.post(f"{url}/query_result", data={"task_id_list": json.dumps([task_id])}, timeout=10)
    assert [i["task_id"] for i in as_form.json()["data"]] == [task_id] and as_form.json()["data"][0]["status"] == 1
    for empty in ({}, {"task_id_list": []}, {"task_id_list": ""}):  # acestep/api/http/query_result_service.py
        answer = requests.post(f"{url}/query_result", json=empty, timeout=10)
        assert answer.status_code == 200 and answer.json()["data"] == []
    formatted = requests.post(f"{url}/format_input", data={"prompt": "p", "lyrics": "l",
                                                           "param_obj": json.dumps({"bpm": 100})}, timeout=120)
    assert formatted.status_code in (501, 502) and "LM" in formatted.json()["error"]  # read as a form; no LM here


def test_routes_and_fields_upstream_clients_read(url):
    health = requests.get(f"{url}/health", timeout=10).json()["data"]
    assert health["service"] == "ACE-Step API" and health["models_initialized"] is True
    assert health["loaded_model"] == "acestep-v15-turbo" and health["llm_initialized"] is False
    assert "loaded_lm_model" in health
    models = requests.get(f"{url}/v1/models", timeout=10).json()["data"]
    assert requests.get(f"{url}/v1/model_inventory", timeout=10).json()["data"] == models
    assert models["models"][0]["supported_task_types"] == ["text2music", "repaint", "cover"]
    assert models["llm_initialized"] is False and models["loaded_lm_model"] is None
    stats = requests.get(f"{url}/v1/stats", timeout=10).json()["data"]
    assert isinstance(stats["avg_job_seconds"], float)
    custom = requests.post(f"{url}/create_random_sample", json={"sample_type": "custom_mode"}, timeout=10).json()
    assert custom["code"] == 200 and custom["data"]["caption"] and custom["data"]["lyrics"]
    simple = requests.post(f"{url}/create_random_sample", data={"sample_type": "simple_mode"}, timeout=10).json()
    assert simple["data"]["description"]
    bad = requests.post(f"{url}/create_random_sample", json={"sample_type": "weird"}, timeout=10)
    assert bad.status_code == 400 and "sample_type must be one of" in bad.json()["error"]


@pytest.mark.parametrize("origin, allowed", [("null", True), ("http://localhost:5173", True),
                                             ("http://127.0.0.1:8080", True), ("https://evil.example", False)])
def test_browsers_are_let_in_by_upstreams_rule(pod, origin, allowed):
    """acestep/api/route_setup.py: pages opened from a file (origin null) and localhost pages may call the API."""
    preflight = requests.options(f"{pod}/release_task", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"}, timeout=10)
    got = preflight.headers.get("access-control-allow-origin")
    assert (got == origin) is allowed, preflight.headers


def test_audio_lands_where_upstream_clients_look(pod, tmp_path_factory):
    task_id = requests.post(f"{pod}/release_task", json={**BASE, "duration": 10}, timeout=60).json()["data"]["task_id"]
    [result] = json.loads(wait_for_task(pod, task_id, timeout=180)["result"])
    path = requests.utils.unquote(result["file"].split("path=", 1)[1])
    assert "/api_audio/" in path and path.endswith(".mp3")


def test_base64_inputs_still_work_beside_uploads(url):
    source = base64.b64encode(wav_file(12)).decode()
    answer = requests.post(f"{url}/release_task", json={**BASE, "task_type": "repaint", "src_audio_base64": source,
                                                        "repainting_start": 1, "repainting_end": 4}, timeout=60)
    item = wait_for_task(url, answer.json()["data"]["task_id"], timeout=180)
    assert item["status"] == 1 and json.loads(item["result"])[0]["metas"]["duration"] == pytest.approx(12, abs=0.05)


def test_an_upload_too_big_for_a_runpod_job_goes_through_the_shims_bucket(runpod_parts, s3_server):
    """RunPod takes about 10 MB of job input; an 11.5 MB WAV (15 MB as base64) is passed as a presigned link to a
    copy in the shim's bucket, rendered from, and the copy removed when the task ends."""
    url, standin = runpod_parts.url, runpod_parts.standin
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.random.default_rng(2).standard_normal(60 * 48_000)).astype(np.float32), 48_000,
             format="WAV", subtype="FLOAT")
    big = buffer.getvalue()
    assert len(big) > 11_000_000
    jobs = set(standin.jobs)
    answer = requests.post(f"{url}/release_task", data=form_of({**BASE, "task_type": "repaint",
                                                                "repainting_start": 1, "repainting_end": 3}),
                           files={"src_audio": ("long.wav", big)}, timeout=120)
    assert answer.status_code == 200, answer.text
    [job_id] = set(standin.jobs) - jobs
    sent = standin.jobs[job_id]["input"]
    assert "src_audio_base64" not in sent and sent["src_audio_url"].startswith(s3_server)
    assert len(json.dumps(sent)) < 10_000
    staged = s3_client(s3_server).list_objects_v2(Bucket=runpod_parts.staging_bucket).get("Contents", [])
    assert [o["Size"] for o in staged] == [len(big)]
    item = wait_for_task(url, answer.json()["data"]["task_id"], timeout=300)
    assert item["status"] == 1, item
    assert json.loads(item["result"])[0]["metas"]["duration"] == pytest.approx(60, abs=0.05)
    deadline = time.monotonic() + 10
    while s3_client(s3_server).list_objects_v2(Bucket=runpod_parts.staging_bucket).get("KeyCount") and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert s3_client(s3_server).list_objects_v2(Bucket=runpod_parts.staging_bucket)["KeyCount"] == 0


def test_a_page_opened_from_a_file_can_drive_the_shim(pod):
    """What upstream's studio page does from file:// (origin null): submit, poll, fetch the audio, read an error;
    each answer carries the header a browser needs to hand it to the page."""
    page = {"Origin": "null"}
    submitted = requests.post(f"{pod}/release_task", json={**BASE, "duration": 10}, headers=page, timeout=60)
    assert submitted.headers.get("access-control-allow-origin") == "null"
    task_id = submitted.json()["data"]["task_id"]
    wait_for_task(pod, task_id, timeout=180)
    polled = requests.post(f"{pod}/query_result", json={"task_id_list": [task_id]}, headers=page, timeout=10)
    assert polled.headers.get("access-control-allow-origin") == "null"
    [result] = json.loads(polled.json()["data"][0]["result"])
    audio = requests.get(pod + result["file"], headers=page, timeout=60)
    assert audio.status_code == 200 and audio.headers.get("access-control-allow-origin") == "null"
    refused = requests.post(f"{pod}/release_task", json={**BASE, "bpm": 900}, headers=page, timeout=60)
    assert refused.status_code == 400 and refused.headers.get("access-control-allow-origin") == "null"


def big_wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.random.default_rng(3).standard_normal(60 * 48_000)).astype(np.float32), 48_000,
             format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def staged_objects(s3_server: str, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_client(s3_server).list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_staged_upload_whose_job_runpod_refused_is_removed_at_once(runpod_parts, s3_server):
    url, standin = runpod_parts.url, runpod_parts.standin
    requests.post(f"{standin.url}/_standin/fail_next", json={"route": "run", "statuses": [503]}, timeout=5)
    answer = requests.post(f"{url}/release_task", data=form_of({**BASE, "task_type": "cover"}),
                           files={"src_audio": ("long.wav", big_wav())}, timeout=120)
    assert answer.status_code == 502, answer.text
    assert staged_objects(s3_server, runpod_parts.staging_bucket) == []


def test_staged_uploads_left_by_a_shim_that_died_are_removed_at_the_next_start(checkpoint_dir, s3_server, tmp_path):
    """A shim killed between a task's end and its clean-up (or before the task was even saved) leaves objects in the
    bucket and their record in the store: the next start removes them, and keeps what a running task needs."""
    from api_shim.backends.runpod_staging import STAGED_KEY
    from api_shim.task_store import TaskStore
    from api_shim.tasks import Task

    bucket = "sweep-inputs"
    s3 = s3_client(s3_server)
    s3.create_bucket(Bucket=bucket)
    store = TaskStore(tmp_path / "out" / "tasks.sqlite3")
    ended, running = Task.new("a", ""), Task.new("b", "")
    ended.fail("done before the clean-up")
    running.remote_id = "still-at-runpod"
    for task in (ended, running):
        store.save(task)
    keys = {name: f"acestep/inputs/{name}/src_audio.wav" for name in (ended.task_id, running.task_id, "never-saved")}
    for task_id, key in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF")
        store.set_value(STAGED_KEY.format(task_id), [key])
    store.close()
    standin = RunPodStandIn(ENDPOINT, CLIENT_KEY, WORKER_KEY)
    port = free_port()
    with ServerThread(standin.app, port):
        process, _ = start_shim(checkpoint_dir, tmp_path / "out", RUNPOD_ENDPOINT_ID=ENDPOINT,
                                RUNPOD_API_KEY=CLIENT_KEY, RUNPOD_ENDPOINT_BASE_URL=f"http://127.0.0.1:{port}/v2",
                                BUCKET_ENDPOINT_URL=s3_server, BUCKET_ACCESS_KEY_ID="test-key",
                                BUCKET_SECRET_ACCESS_KEY="test-secret-value", BUCKET_NAME=bucket)
        stop(process)
    assert staged_objects(s3_server, bucket) == [keys[running.task_id]]
