"""Task records in a small SQLite file next to the audio, so results survive a restart of the shim.

One connection, guarded by a lock: every call is a single short statement, fast enough to run on the
event loop. Audio that lives in a bucket (runpod backend) is recorded under a local-looking path so the
``file`` field keeps its upstream form; ``/v1/audio`` looks it up here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from api_shim.models import FAILED, QUEUED_OR_RUNNING, SUCCEEDED, JobCounts
from api_shim.tasks import Task

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, prompt TEXT, lyrics TEXT, status INTEGER, stage TEXT, progress REAL,
    created REAL, started REAL, finished REAL, items TEXT, error TEXT, remote_id TEXT
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created);
CREATE TABLE IF NOT EXISTS shim_values (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remote_audio (
    path TEXT PRIMARY KEY, url TEXT NOT NULL, content_type TEXT, task_id TEXT, created REAL
);
"""
_COLUMNS = ("task_id", "prompt", "lyrics", "status", "stage", "progress", "created", "started", "finished",
            "items", "error", "remote_id")


class TaskStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, task: Task) -> None:
        row = asdict(task)
        row["items"] = json.dumps(row["items"]) if row["items"] is not None else None
        values = [row[c] for c in _COLUMNS]
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO tasks ({', '.join(_COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE task_id = ?",
                                   (task_id,)).fetchone()
        if row is None:
            return None
        data = dict(zip(_COLUMNS, row))
        data["items"] = json.loads(data["items"]) if data["items"] else None
        return Task(**data)

    def unfinished(self) -> list[Task]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT task_id FROM tasks WHERE status = ? ORDER BY created",
                                                  (QUEUED_OR_RUNNING,))]
        return [t for t in (self.get(i) for i in ids) if t is not None]

    def counts(self) -> tuple[JobCounts, float | None]:
        """Jobs by state, and the mean seconds from start to finish of the succeeded ones."""
        with self._lock:
            rows = self._db.execute("SELECT status, stage, COUNT(*) FROM tasks GROUP BY status, stage").fetchall()
            mean = self._db.execute("SELECT AVG(finished - COALESCE(started, created)) FROM tasks "
                                    "WHERE status = ? AND finished IS NOT NULL", (SUCCEEDED,)).fetchone()[0]
        counts = JobCounts()
        for status, stage, n in rows:
            counts.total += n
            if status == SUCCEEDED:
                counts.succeeded += n
            elif status == FAILED:
                counts.failed += n
            elif stage == "queued":
                counts.queued += n
            else:
                counts.running += n
        return counts, (round(mean, 3) if mean is not None else None)

    # --- small values the shim remembers (the models its endpoint reported, staged inputs) ---
    def set_value(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO shim_values VALUES (?, ?)", (key, json.dumps(value)))

    def get_value(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM shim_values WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_value(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM shim_values WHERE key = ?", (key,))

    def values_under(self, prefix: str) -> dict[str, Any]:
        """Every value whose key starts with ``prefix`` (a plain prefix, no wildcards)."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM shim_values WHERE substr(key, 1, ?) = ?",
                                    (len(prefix), prefix)).fetchall()
        return {key: json.loads(value) for key, value in rows}

    # --- audio kept in a bucket ---
    def add_remote_audio(self, path: str, url: str, content_type: str, task_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO remote_audio VALUES (?, ?, ?, ?, ?)",
                             (path, url, content_type, task_id, time.time()))

    def forget_remote_audio(self, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM remote_audio WHERE path = ?", (path,))

    def remote_audio(self, path: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT url, content_type FROM remote_audio WHERE path = ?", (path,)).fetchone()
        return (row[0], row[1]) if row else None

    # --- retention ---
    def purge(self, older_than_s: float) -> list[str]:
        """Forget tasks finished longer ago than ``older_than_s``; returns their audio paths to delete."""
        cutoff = time.time() - older_than_s
        with self._lock:
            rows = self._db.execute("SELECT task_id, items FROM tasks WHERE status != ? AND finished < ?",
                                    (QUEUED_OR_RUNNING, cutoff)).fetchall()
            self._db.execute("DELETE FROM tasks WHERE status != ? AND finished < ?", (QUEUED_OR_RUNNING, cutoff))
            self._db.execute("DELETE FROM remote_audio WHERE created < ?", (cutoff,))
        paths = []
        for _, items in rows:
            for item in json.loads(items) if items else []:
                query = urllib.parse.urlsplit(item.get("file", "")).query
                paths += urllib.parse.parse_qs(query).get("path", [])
        return paths
