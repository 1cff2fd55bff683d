"""``python handler.py`` in RunPod's local test mode, as a subprocess, on the tiny checkpoint."""

import json
import subprocess
import sys

from conftest import ROOT, decode, worker_env


def run_handler(env, *args, timeout=300):
    return subprocess.run([sys.executable, "handler.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_test_input_json_makes_two_decodable_mp3s(checkpoint_dir, tmp_path):
    job = json.loads((ROOT / "test_input.json").read_text())
    out = tmp_path / "outputs"
    result = run_handler(worker_env(checkpoint_dir, ACESTEP_OUTPUT_DIR=str(out)), "--test_input", json.dumps(job))
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(out.glob("*.mp3"))
    assert len(files) == job["input"]["batch_size"] == 2
    for path in files:
        audio, rate = decode(path.read_bytes())
        assert rate == 48_000 and audio.shape[1] == 2
        assert abs(audio.shape[0] / rate - job["input"]["audio_duration"]) < 0.05
    assert "completed successfully" in result.stdout + result.stderr


def test_raw_jobs_stay_out_of_the_log(checkpoint_dir, tmp_path):
    job = {"input": {"prompt": "x", "audio_duration": 10, "batch_size": 1, "inference_steps": 2},
           "s3Config": {"endpointUrl": "http://127.0.0.1:9", "accessId": "id-abc",
                        "accessSecret": "very-secret-value", "bucketName": "b"}}
    env = worker_env(checkpoint_dir, ACESTEP_UNDELIVERED_DIR=str(tmp_path), ACESTEP_UPLOAD_ATTEMPTS="1",
                     ACESTEP_ALLOW_PRIVATE_ENDPOINTS="1")
    result = run_handler(env, "--test_input", json.dumps(job))
    log = result.stdout + result.stderr
    assert result.returncode == 1  # the upload fails: RunPod's local mode exits 1 on a job error
    assert "failed after 1 attempt(s)" in log
    assert "very-secret-value" not in log


def test_a_jobs_bucket_on_an_internal_address_is_refused_before_any_gpu_work(checkpoint_dir, tmp_path):
    # the caller chooses s3Config: it must not make the worker connect into its own network
    for endpoint in ("http://169.254.169.254",):  # the cloud metadata address; the others: test_storage.py
        job = {"input": {"prompt": "x", "audio_duration": 10, "batch_size": 1, "inference_steps": 2},
               "s3Config": {"endpointUrl": endpoint, "accessId": "id-abc", "accessSecret": "very-secret-value",
                            "bucketName": "b"}}
        env = worker_env(checkpoint_dir, ACESTEP_UNDELIVERED_DIR=str(tmp_path / "kept"))
        result = run_handler(env, "--test_input", json.dumps(job))
        log = result.stdout + result.stderr
        assert result.returncode == 1
        assert "s3Config.endpointUrl must point to a public address" in log, log[-2000:]
        assert not (tmp_path / "kept").exists()  # nothing was generated, so nothing had to be kept


def test_a_missing_checkpoint_is_one_clear_line_not_a_traceback(tmp_path):
    env = worker_env(tmp_path / "empty")
    result = run_handler(env, "--test_input", json.dumps({"input": {"prompt": "x"}}), timeout=120)
    assert result.returncode == 1
    assert "acestep-worker cannot start: no DiT checkpoint folder at" in result.stderr
    assert "builder/" in result.stderr
    assert "Traceback" not in result.stderr


def test_progress_reaches_runpods_job_webhook(checkpoint_dir, tmp_path):
    """With RunPod's webhook variable set, progress_update posts each stage; a loopback server records them."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = worker_env(checkpoint_dir, ACESTEP_OUTPUT_DIR=str(tmp_path),
                         RUNPOD_WEBHOOK_POST_OUTPUT=f"http://127.0.0.1:{server.server_port}/job-done")
        job = {"input": {"prompt": "x", "audio_duration": 10, "batch_size": 1, "inference_steps": 4}}
        result = run_handler(env, "--test_input", json.dumps(job))
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        server.shutdown()
    updates = [r["output"] for r in received if r.get("status") == "IN_PROGRESS"]
    stages = [u["stage"] for u in updates]
    # the SDK posts from daemon threads and local mode exits right after the job, so only stages with
    # work after them are sure to arrive ("delivering" may be cut off)
    assert "generating" in stages and "encoding" in stages
    generating = [u["progress"] for u in updates if u["stage"] == "generating"]
    assert generating == sorted(generating) and all(0.0 < p <= 1.0 for p in generating)
