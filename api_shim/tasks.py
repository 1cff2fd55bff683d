"""A task as the shim tracks it, and the ``result`` string of ``/query_result`` built from it."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from api_shim.models import FAILED, QUEUED_OR_RUNNING, SUCCEEDED, QueryResultItem

ENV_NAME = "development"  # what upstream reports in every result item
NOT_SET = "N/A"


@dataclass
class Task:
    task_id: str
    prompt: str  # as the caller sent them (metas.prompt / metas.lyrics of the result)
    lyrics: str
    status: int = QUEUED_OR_RUNNING
    stage: str = "queued"
    progress: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    items: list[dict[str, Any]] | None = None  # result items once succeeded
    error: str | None = None
    remote_id: str | None = None  # the RunPod job id, runpod backend only
    queue_position: int = 0

    @classmethod
    def new(cls, prompt: str, lyrics: str) -> "Task":
        return cls(task_id=str(uuid.uuid4()), prompt=prompt, lyrics=lyrics)

    @property
    def done(self) -> bool:
        return self.status != QUEUED_OR_RUNNING

    def succeed(self, items: list[dict[str, Any]]) -> None:
        self.status, self.stage, self.progress, self.items = SUCCEEDED, "succeeded", 1.0, items
        self.finished = time.time()

    def fail(self, message: str) -> None:
        self.status, self.stage, self.error = FAILED, "failed", message
        self.finished = time.time()

    def query_item(self) -> QueryResultItem:
        return QueryResultItem(task_id=self.task_id, status=self.status,
                               result=json.dumps(self._result_list(), ensure_ascii=False),
                               progress_text=self.progress_text())

    def progress_text(self) -> str:
        if self.status == SUCCEEDED:
            return f"succeeded: {len(self.items or [])} audio(s)"
        if self.status == FAILED:
            return f"failed: {self.error}"
        if self.stage == "queued":
            return f"queued (position {self.queue_position})" if self.queue_position else "queued"
        return f"{self.stage} {self.progress * 100:.0f}%"

    def _result_list(self) -> list[dict[str, Any]]:
        if self.status == SUCCEEDED and self.items:
            return self.items
        base = {"file": "", "wave": "", "status": self.status, "create_time": int(self.created), "env": ENV_NAME,
                "prompt": self.prompt, "lyrics": self.lyrics, "progress": round(self.progress, 3),
                "stage": self.stage}
        if self.status == FAILED:
            base["error"] = self.error or "failed"
        return [base]


def unknown_task_item(task_id: str) -> QueryResultItem:
    """[better] An id this shim never issued (or forgot) is a failure, not 'queued' forever."""
    task = Task(task_id=task_id, prompt="", lyrics="")
    task.fail(f"unknown task_id {task_id[:64]!r}: this server has no such task (results are kept for a limited "
              f"time; submit it again)")
    return task.query_item()


def file_url(path: str) -> str:
    """The upstream form of an audio's address: ``/v1/audio?path=<url-quoted absolute path>``."""
    return "/v1/audio?path=" + urllib.parse.quote(path)


def generation_info(output: dict[str, Any]) -> str:
    metas, timings = output.get("metas", {}), output.get("timings", {})
    seeds = ",".join(str(a.get("seed")) for a in output.get("audios", []))
    lines = [f"- BPM: {metas.get('bpm') or 'auto'}", f"- Key Scale: {metas.get('keyscale') or 'auto'}",
             f"- Time Signature: {metas.get('timesignature') or 'auto'}",
             f"- Duration: {metas.get('duration', 0):g} s", f"- Seeds: {seeds}",
             f"- Total Time: {timings.get('total_s', 0):.2f} s (generate {timings.get('generate_s', 0):.2f} s, "
             f"encode {timings.get('encode_s', 0):.2f} s)"]
    return "\n".join(lines)


def _filled(value: Any) -> Any:
    """Upstream's placeholder for a song's metadata nobody chose: "N/A"."""
    return NOT_SET if value is None or value == "" else value


def success_items(task: Task, output: dict[str, Any], paths: list[str]) -> list[dict[str, Any]]:
    """One upstream-shaped result object per audio, from the worker's output (docs/api.md, "Results")."""
    metas = output.get("metas", {})
    seeds = ",".join(str(a.get("seed")) for a in output.get("audios", []))
    info = generation_info(output)
    created = int(task.created)
    return [{"file": file_url(path), "wave": "", "status": SUCCEEDED, "create_time": created, "env": ENV_NAME,
             "prompt": output.get("prompt", task.prompt), "lyrics": output.get("lyrics", task.lyrics),
             "metas": {**{name: _filled(metas.get(name)) for name in ("bpm", "duration", "genres", "keyscale",
                                                                       "timesignature")},
                       "prompt": task.prompt, "lyrics": task.lyrics},
             "generation_info": info, "seed_value": seeds, "lm_model": output.get("lm_model") or "",
             "dit_model": output.get("dit_model", ""), "audio_codes": output.get("audio_codes") or "",
             "progress": 1.0, "stage": "succeeded"}
            for path in paths]
