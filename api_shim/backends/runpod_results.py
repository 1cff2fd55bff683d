"""A RunPod job's state applied to the shim's task: progress, the failure's reason, or the finished audio kept.

Audio in a bucket is recorded under a local-looking path (``/v1/audio`` streams it); inline audio is written to
the output folder; a path on a volume shared with the worker is used as it is. When keeping the audios of a
result fails part-way, whatever was already written is removed again, so a retry starts clean and nothing is
left that no task points to.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import uuid
from pathlib import Path
from typing import Any

from api_shim.runpod_client import FINAL_STATES, job_error
from api_shim.task_store import TaskStore
from api_shim.tasks import Task, success_items
from inference.delivery import write_bytes_atomically
from inference.contract.vocabulary import CONTENT_TYPES, FILE_EXTENSIONS


class ResultError(ValueError):
    """The worker's result cannot be used (an unknown format, base64 that does not decode)."""


def apply_state(task: Task, state: dict[str, Any], store: TaskStore, output_dir: Path) -> None:
    """Move ``task`` to what RunPod's ``state`` says. Raises OSError when the audio could not be written (the
    caller retries later); a result that cannot be used fails the task with the reason."""
    status, output = state.get("status"), state.get("output")
    if status == "IN_QUEUE":
        task.stage = "queued"
    elif status == "IN_PROGRESS":
        task.started = task.started or time.time()
        if isinstance(output, dict):
            task.progress = float(output.get("progress", task.progress) or 0.0)
            task.stage = str(output.get("stage") or "running")
        else:
            task.stage = "running"
    elif status == "COMPLETED" and not job_error(state) and isinstance(output, dict) and output.get("audios"):
        try:
            paths = keep_audio(task, output["audios"], store, output_dir)
        except ResultError as err:
            task.fail(str(err))
        else:
            task.succeed(success_items(task, output, paths))
    elif status in FINAL_STATES:
        task.fail(job_error(state) or f"the RunPod job ended {str(status).lower()} without audio")


def keep_audio(task: Task, audios: list[dict[str, Any]], store: TaskStore, output_dir: Path) -> list[str]:
    written: list[str] = []
    recorded: list[str] = []
    try:
        paths = []
        for audio in audios:
            if not isinstance(audio, dict):
                raise ResultError("the worker returned an audio that is not an object")
            audio_format = str(audio.get("format", "mp3"))
            if audio_format not in CONTENT_TYPES:
                raise ResultError(f"the worker returned audio in an unknown format {audio_format[:20]!r}")
            extension = FILE_EXTENSIONS[audio_format]
            if audio.get("url"):
                path = os.path.realpath(output_dir / "remote" / f"{uuid.uuid4().hex}.{extension}")
                store.add_remote_audio(path, str(audio["url"]), CONTENT_TYPES[audio_format], task.task_id)
                recorded.append(path)
            elif audio.get("base64"):
                try:
                    data = base64.b64decode(audio["base64"], validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise ResultError("the worker returned audio that is not valid base64") from None
                path = os.path.realpath(write_bytes_atomically(output_dir, data, extension))
                written.append(path)
            elif audio.get("path"):
                path = os.path.realpath(str(audio["path"]))  # a volume shared with the worker
            else:
                raise ResultError("the worker returned an audio without url, base64 or path")
            paths.append(path)
        return paths
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        for path in recorded:
            store.forget_remote_audio(path)
        raise
