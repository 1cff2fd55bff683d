"""Soak of the shim in pod mode: under a steady loopback load, memory, fds, threads and the output folder stay flat.

``python -m api_shim`` (local backend, ACESTEP_RESULT_TTL=60: audio purged every 15 s) serves ``--clients`` song
clients looping submit (10 s, 2 steps, batch 1, mp3), poll every 0.2 s, download; ``--pollers`` clients only poll
recent ids. Every few seconds the shim's /proc entry (RSS, fds, threads) and output folder are sampled. It fails
(non-zero exit, one-line reason) on any failed task or HTTP error; when RSS grows over 20 % (at least 50 MiB), or
fds or threads by over 10, from their peak at the start of the steady state (after 15 % of the run and the first
song, over a third of the run) to their peak over the last third; when the folder ever holds more audio than songs
finished within TTL + a purge interval (judged only on runs longer than TTL + two purge intervals). Every
/query_result's wall-clock latency is kept.

    .venv/bin/python bench/soak.py --seconds 600 [--clients 4] [--pollers 2] [--checkpoint-dir DIR]

Without --checkpoint-dir (or ACESTEP_CHECKPOINT_DIR) a tiny random-weight checkpoint is made in a temporary folder.
The last line is the headline: ``poll_p99_ms <p99 of all polls>``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.processes import free_port, stop  # noqa: E402

TTL_S, PURGE_S, SLACK_S = 60, 15.0, 5.0
SONG = {"prompt": "soak", "lyrics": "[inst]", "audio_duration": 10, "inference_steps": 2, "batch_size": 1,
        "audio_format": "mp3"}
AUDIO = (".mp3", ".wav", ".flac", ".opus", ".aac", ".ogg", ".m4a")
MIB = 1 << 20


class Load:
    """What the clients saw, shared between their threads."""

    def __init__(self, url: str, stop_at: float):
        self.url, self.stop_at, self.lock = url, stop_at, threading.Lock()
        self.poll_ms: list[float] = []
        self.finished: list[float] = []  # monotonic time each song was seen succeeded
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.downloaded = 0
        self.recent: collections.deque[str] = collections.deque(maxlen=8)

    def poll(self, session: requests.Session, ids: list[str]) -> list[dict]:
        start = time.perf_counter()
        response = session.post(f"{self.url}/query_result", json={"task_id_list": ids}, timeout=30)
        elapsed = (time.perf_counter() - start) * 1000
        response.raise_for_status()
        with self.lock:
            self.poll_ms.append(elapsed)
        return response.json()["data"]

    def song(self, session: requests.Session, poll_every: float) -> None:
        response = session.post(f"{self.url}/release_task", json=SONG, timeout=30)
        response.raise_for_status()
        task_id = response.json()["data"]["task_id"]
        with self.lock:
            self.recent.append(task_id)
        while True:
            time.sleep(poll_every)
            [item] = self.poll(session, [task_id])
            if item["status"] != 0:
                break
        if item["status"] != 1:
            with self.lock:
                self.failed.append(f"{task_id}: {item['result'][:200]}")
            return
        size = 0
        with session.get(self.url + json.loads(item["result"])[0]["file"], stream=True, timeout=30) as audio:
            audio.raise_for_status()
            for chunk in audio.iter_content(1 << 16):
                size += len(chunk)
        with self.lock:
            self.finished.append(time.monotonic())
            self.downloaded += size

    def run(self, poll_every: float, songs: bool) -> None:
        with requests.Session() as session:
            while time.monotonic() < self.stop_at:
                try:
                    if songs:
                        self.song(session, poll_every)
                    else:
                        with self.lock:
                            ids = list(self.recent) or ["no-such-task"]
                        self.poll(session, ids)
                        time.sleep(poll_every)
                except (requests.RequestException, ValueError, KeyError) as err:
                    with self.lock:
                        self.errors.append(f"{type(err).__name__}: {err}"[:200])
                    time.sleep(1)


def sample(pid: int, folder: Path) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    sizes = {}
    for place, _, names in os.walk(folder):  # audio is in api_audio/, the task records beside it
        for name in names:
            try:  # the purge may delete a file between listing and stat
                sizes[os.path.join(place, name)] = os.stat(os.path.join(place, name)).st_size
            except FileNotFoundError:
                pass
    return {"t": time.monotonic(), "rss": int(status["VmRSS"].split()[0]) * 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "files": len(sizes), "bytes": sum(sizes.values()),
            "audio": sum(name.endswith(AUDIO) for name in sizes)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def start_shim(checkpoint_dir: Path, work: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "ACESTEP_", "RUNPOD_"))}
    env.update(ACESTEP_CHECKPOINT_DIR=str(checkpoint_dir), ACESTEP_DIT_MODEL=os.environ.get(
               "ACESTEP_DIT_MODEL", "acestep-v15-turbo"), ACESTEP_SHIM_BACKEND="local", ACESTEP_API_HOST="127.0.0.1",
               ACESTEP_API_PORT=str(port), ACESTEP_OUTPUT_DIR=str(work / "out"), ACESTEP_RESULT_TTL=str(TTL_S),
               ACESTEP_WARMUP="0", PYTHONUNBUFFERED="1")
    with open(work / "shim.log", "wb") as log:
        shim = subprocess.Popen([sys.executable, "-m", "api_shim"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return shim, url, work / "out"
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or shim.poll() is not None:
            shim.kill()
            sys.exit(f"the shim did not become ready (log: {work / 'shim.log'})")
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=4, help="song clients (submit, poll, download, repeat)")
    parser.add_argument("--pollers", type=int, default=2, help="clients that only poll recent task ids, 4x as often")
    parser.add_argument("--poll-every", type=float, default=0.2, help="seconds between a song client's polls")
    parser.add_argument("--sample-every", type=float, default=3.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    args = parser.parse_args()

    from bench.tiny import checkpoint_root

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    shim, url, folder = start_shim(checkpoint_root(args.checkpoint_dir), work)
    try:
        t0 = time.monotonic()
        load = Load(url, t0 + args.seconds)
        threads = [threading.Thread(target=load.run, args=(args.poll_every, True), daemon=True)
                   for _ in range(args.clients)]
        threads += [threading.Thread(target=load.run, args=(args.poll_every / 4, False), daemon=True)
                    for _ in range(args.pollers)]
        for thread in threads:
            thread.start()
        samples = [sample(shim.pid, folder)]
        while any(t.is_alive() for t in threads) and time.monotonic() < t0 + args.seconds + 120:
            time.sleep(args.sample_every)
            if shim.poll() is not None:
                sys.exit(f"the shim exited with code {shim.returncode} during the soak (log: {work / 'shim.log'})")
            samples.append(sample(shim.pid, folder))
        end, stuck = time.monotonic(), sum(t.is_alive() for t in threads)
        (work / "samples.json").write_text(json.dumps([{**s, "t": round(s["t"] - t0, 2)} for s in samples]))
        log_errors = sum("Traceback" in line or " ERROR " in line for line in (work / "shim.log").read_text().splitlines())
    finally:
        stop(shim)

    # RSS swings by a song's working set between samples: compare the peak at the start of the steady state (after
    # 15 % of the run and the first song, over a third of the run) with the peak of the last third
    warm_at = max(t0 + 0.15 * args.seconds, min(load.finished, default=end))
    last_from = t0 + 2 * args.seconds / 3
    steady = [s for s in samples if s["t"] >= warm_at] or samples[-1:]
    first = [s for s in steady if s["t"] < min(warm_at + args.seconds / 3, last_from)] or steady[:1]
    last = [s for s in samples if s["t"] >= last_from] or samples[-1:]
    base, top = ({key: max(s[key] for s in group) for key in ("rss", "fds", "threads")} for group in (first, last))
    grew = {key: top[key] - base[key] for key in top}
    allowed = {"rss": max(0.2 * base["rss"], 50 * MIB), "fds": 10, "threads": 10}
    unit = {"rss": (MIB, " MiB"), "fds": (1, ""), "threads": (1, "")}
    reasons = [f"{key} grew by {grew[key] / unit[key][0]:.0f}{unit[key][1]} (allowed {allowed[key] / unit[key][0]:.0f})"
               for key in top if grew[key] > allowed[key]]
    if load.failed or load.errors:
        reasons.insert(0, f"{len(load.failed)} failed task(s), {len(load.errors)} HTTP error(s): "
                          f"{(load.failed + load.errors)[0]}")
    elif not load.finished:
        reasons.insert(0, "no song finished")
    elif not any(s["audio"] for s in samples):  # the retention check below would judge an empty folder
        reasons.insert(0, "songs finished but no audio file was ever seen in the output folder")
    if stuck:
        reasons.insert(0, f"{stuck} client(s) still waiting on the shim 120 s after the end")
    # a file lives from its task's end until the first purge after TTL: at most TTL + one purge interval
    window = TTL_S + PURGE_S + SLACK_S
    bounds = [(s["audio"], sum(s["t"] - window <= f <= s["t"] + SLACK_S for f in load.finished)) for s in samples]
    over = [(n, bound) for n, bound in bounds if n > bound]
    if args.seconds <= TTL_S + 2 * PURGE_S:
        retention = f"not judged (run {args.seconds:g} s <= TTL {TTL_S} s + 2 purges of {PURGE_S:g} s)"
    else:
        retention = (f"{f'OVER at {len(over)} sample(s)' if over else 'bounded at every sample'}: at the end "
                     f"{bounds[-1][0]} audio files, {bounds[-1][1]} allowed (songs finished in the last {window:g} s)")
        if over:
            reasons.append(f"the output folder held {over[0][0]} audio files where retention allows {over[0][1]}")

    elapsed, polls, n = end - t0, load.poll_ms, len(load.finished)
    rows = {"duration": f"{elapsed:.0f} s ({args.clients} song clients, {args.pollers} pollers)",
            "tasks completed / failed": f"{n} / {len(load.failed)} ({n / elapsed * 60:.1f} per min)",
            "HTTP errors / shim log errors": f"{len(load.errors)} / {log_errors}",
            "downloaded": f"{load.downloaded / MIB:.1f} MiB",
            "polls": f"{len(polls)} ({len(polls) / elapsed:.0f}/s), p50 {pct(polls, 0.5):.1f} ms, "
                     f"p99 {pct(polls, 0.99):.1f} ms, max {max(polls, default=0):.1f} ms",
            "steady state": f"max over t={first[0]['t'] - t0:.0f}-{first[-1]['t'] - t0:.0f} s vs over "
                            f"t={last[0]['t'] - t0:.0f}-{last[-1]['t'] - t0:.0f} s "
                            f"({len(samples)} samples in {work / 'samples.json'})",
            "RSS": f"{base['rss'] / MIB:.0f} -> {top['rss'] / MIB:.0f} MiB ({grew['rss'] / MIB:+.0f}, "
                   f"allowed +{allowed['rss'] / MIB:.0f})",
            "open fds": f"{base['fds']} -> {top['fds']} ({grew['fds']:+d}, allowed +10)",
            "threads": f"{base['threads']} -> {top['threads']} ({grew['threads']:+d}, allowed +10)",
            "output audio files peak / end": f"{max(s['audio'] for s in samples)} / {samples[-1]['audio']} "
                                             f"({samples[-1]['files']} files, {samples[-1]['bytes'] / MIB:.1f} MiB)",
            "retention": retention, "verdict": "; ".join(reasons) or "ok"}
    for name, value in rows.items():
        print(f"{name:<30} {value}")
    print(f"poll_p99_ms {pct(polls, 0.99):.1f}")
    if reasons:
        sys.exit(f"soak failed: {reasons[0]} (shim log: {work / 'shim.log'})")


if __name__ == "__main__":
    main()
