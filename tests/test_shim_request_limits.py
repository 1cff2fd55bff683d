"""What a request costs the shim before it is authorized and while it is read, over real sockets: without the
key only a small body is read, the bodies read at once are bounded in bytes, and in front of RunPod a body
that RunPod would refuse is refused at once."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.conftest import start_shim, stop
from tests.test_shim_local import SONG, assert_error

KEY = "limits-key"
GOOD = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed_shim(checkpoint_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("limits") / "outputs"
    process, url = start_shim(checkpoint_dir, output, ACESTEP_API_KEY=KEY, ACESTEP_MAX_BODY_BYTES="200000",
                              ACESTEP_BODY_BUDGET_BYTES="300000")
    try:
        yield url
    finally:
        stop(process)


def open_request(url: str, length: int, headers: dict[str, str], sent: bytes = b"") -> socket.socket:
    """A POST /release_task that declares ``length`` body bytes and sends only ``sent`` of them (a slow client)."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conn.sendall(f"POST /release_task HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head}"
                 f"Content-Length: {length}\r\n\r\n".encode() + sent)
    return conn


def read_response(conn: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            next((line.split(b":")[1] for line in data.split(b"\r\n") if line.lower().startswith(b"content-length")),
                 b"0")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def test_without_the_key_a_big_body_is_refused_before_it_is_sent(keyed_shim):
    # 150 KB announced (within ACESTEP_MAX_BODY_BYTES), nothing sent: the answer must come at once, not after
    # waiting for (and reading) the body
    conn = open_request(keyed_shim, 150_000, {})
    try:
        status, body = read_response(conn)
    finally:
        conn.close()
    assert status == 401 and "API key" in body["error"]
    # a body too big to search for ai_token without the header: 401 that says to use the header
    padded = json.dumps({**SONG, "ai_token": KEY}) + " " * 100_000
    answer = requests.post(f"{keyed_shim}/release_task", data=padded, timeout=10,
                           headers={"Content-Type": "application/json"})
    assert_error(answer, 401, "Authorization", "65536")
    # small bodies may still carry the key as ai_token, as upstream clients send it
    assert requests.post(f"{keyed_shim}/release_task", json={**SONG, "ai_token": KEY}, timeout=10).status_code == 200


def test_the_bodies_read_at_once_are_bounded_in_bytes(keyed_shim):
    padded = json.dumps(SONG) + " " * 150_000  # valid JSON of about 150 KB
    slow = open_request(keyed_shim, 200_000, GOOD, b"{")  # holds 200 KB of the 300 KB budget while it dawdles
    try:
        time.sleep(0.5)
        busy = requests.post(f"{keyed_shim}/release_task", data=padded, timeout=10,
                             headers={**GOOD, "Content-Type": "application/json"})
        assert_error(busy, 503, "ACESTEP_BODY_BUDGET_BYTES")
        assert busy.headers["retry-after"]
    finally:
        slow.close()
    deadline = time.monotonic() + 10
    while True:  # the slow client is gone: its bytes are given back
        answer = requests.post(f"{keyed_shim}/release_task", data=padded, timeout=10,
                               headers={**GOOD, "Content-Type": "application/json"})
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text


def test_the_key_as_upstream_clients_send_it(keyed_shim):
    """acestep/api/http/auth.py: ``Authorization: Bearer <key>``, the bare key, or ai_token in a JSON or form body."""
    song = {"caption": "x", "lyrics": "[inst]", "duration": 10, "inference_steps": 2, "batch_size": 1}
    accepted = [
        requests.post(f"{keyed_shim}/release_task", json=song, headers={"Authorization": KEY}, timeout=30),
        requests.post(f"{keyed_shim}/release_task", json={**song, "ai_token": KEY}, timeout=30),
        requests.post(f"{keyed_shim}/release_task", data={**{k: str(v) for k, v in song.items()}, "ai_token": KEY},
                      timeout=30),
        requests.post(f"{keyed_shim}/query_result", data={"task_id_list": "[]", "ai_token": KEY}, timeout=30),
    ]
    assert [a.status_code for a in accepted] == [200] * 4, [a.text for a in accepted]
    refused = [
        requests.post(f"{keyed_shim}/release_task", json=song, headers={"Authorization": "wrong"}, timeout=30),
        requests.post(f"{keyed_shim}/release_task", data={"caption": "x", "ai_token": "wrong"}, timeout=30),
        requests.get(f"{keyed_shim}/v1/models", headers={"Authorization": f"Basic {KEY}"}, timeout=30),
    ]
    assert [r.status_code for r in refused] == [401] * 3
