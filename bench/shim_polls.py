"""Status polls under load while a song is being made: the shim's event loop must not wait on generation.

Starts ``python -m api_shim`` (local backend) on a loopback port, submits a long song, and while it is
generating sends ``--rate`` requests per second (``/query_result`` and ``/health``, 4:1) from ``--clients``
concurrent connections on a fixed schedule; latency is counted from each request's scheduled time, so a
stall cannot hide by delaying the next request. The same load against the idle server comes first, as
the baseline measured in the same run.

    python bench/shim_polls.py [--rate 200] [--clients 8] [--seconds 6] [--checkpoint-dir DIR]

Without --checkpoint-dir (or ACESTEP_CHECKPOINT_DIR) a tiny random-weight checkpoint is made in a temporary
folder. The last line is the headline: ``poll_p99_ms <p99 while generating>``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.processes import free_port, stop  # noqa: E402


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    response = conn.getresponse()
    payload = response.read()
    return json.loads(payload) if payload else {}


def load(port: int, task_id: str, rate: float, clients: int, seconds: float) -> list[float]:
    """Open-loop load: each client fires on its own schedule; returns latencies in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    interval = clients / rate
    start = time.perf_counter() + 0.2

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        n = 0
        while True:
            due = start + index * interval / clients + n * interval
            if due - start > seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if n % 5 == 4:
                request(conn, "GET", "/health")
            else:
                request(conn, "POST", "/query_result", {"task_id_list": [task_id]})
            mine.append((time.perf_counter() - due) * 1000)
            n += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def summary(name: str, latencies: list[float], seconds: float) -> tuple[float, str]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p99, (f"{name:<12} {len(ordered) / seconds:6.0f} req/s  p50 {statistics.median(ordered):6.1f} ms  "
                 f"p99 {p99:6.1f} ms  max {ordered[-1]:6.1f} ms  ({len(ordered)} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    args = parser.parse_args()

    from bench.tiny import checkpoint_root

    args.checkpoint_dir = checkpoint_root(args.checkpoint_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "ACESTEP_", "RUNPOD_"))}
    env.update(ACESTEP_CHECKPOINT_DIR=str(args.checkpoint_dir), ACESTEP_API_HOST="127.0.0.1",
               ACESTEP_API_PORT=str(port), ACESTEP_OUTPUT_DIR=tempfile.mkdtemp(prefix="bench-shim-"))
    shim = subprocess.Popen([sys.executable, "-m", "api_shim"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                if request(conn, "GET", "/health").get("code") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or shim.poll() is not None:
                sys.exit("the shim did not become ready")
            time.sleep(0.3)

        idle = load(port, "no-such-task", args.rate, args.clients, args.seconds)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # the first one has idled out
        # a song long enough to still be generating when the load ends
        song = {"caption": "bench", "lyrics": "[inst]", "duration": 600, "batch_size": 8, "audio_format": "wav"}
        task_id = request(conn, "POST", "/release_task", song)["data"]["task_id"]
        while json.loads(request(conn, "POST", "/query_result", {"task_id_list": [task_id]})["data"][0]
                         ["result"])[0]["stage"] == "queued":
            time.sleep(0.05)
        busy = load(port, task_id, args.rate, args.clients, args.seconds)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        [item] = request(conn, "POST", "/query_result", {"task_id_list": [task_id]})["data"]
        still = "still generating" if item["status"] == 0 else "FINISHED DURING THE LOAD: use a longer song"
        _, idle_line = summary("idle", idle, args.seconds)
        p99, busy_line = summary("generating", busy, args.seconds)
        print(f"{args.rate:.0f} req/s target from {args.clients} clients for {args.seconds:g} s each; "
              f"the song was {still} at the end")
        print(idle_line)
        print(busy_line)
        print(f"poll_p99_ms {p99:.1f}")
    finally:
        stop(shim)


if __name__ == "__main__":
    main()
