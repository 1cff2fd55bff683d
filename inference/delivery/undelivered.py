"""Audio that was made but could not be delivered: kept on the worker's disk, for a limited time.

Each job's files go to ``ACESTEP_UNDELIVERED_DIR/<job id>/`` (on RunPod, the network volume when one is
mounted, so the operator can still reach them; see ``Settings.undelivered_folder``). Job folders older than
``ACESTEP_UNDELIVERED_TTL`` are removed whenever audio is kept, so the folder never grows without bound.
Keeping never raises: when the disk is full the caller learns that too, and its own error is not lost.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from inference.audio import EncodedAudio
from inference.delivery.files import write_bytes_atomically

log = logging.getLogger("acestep.storage")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEPT = "were kept by the worker (ACESTEP_UNDELIVERED_DIR)"


@dataclass(frozen=True)
class Kept:
    """What ``keep`` managed: how many files were written and, when some were not, why."""

    count: int
    failure: str | None = None
    ttl_s: int = 0

    def describe(self, job_id: str) -> str:
        """For the caller: how many were kept and for how long (where is for the log: ACESTEP_UNDELIVERED_DIR)."""
        hours = f"{self.ttl_s / 3600:g} h"
        if self.failure is None:
            return f"{self.count} audio file(s) {_KEPT} for job {job_id} for {hours}"
        return f"{self.count} audio file(s) {_KEPT} for job {job_id} for {hours}; the rest could not be kept either " \
               f"({self.failure})"


def safe_name(job_id: str) -> str:
    return _SAFE.sub("-", job_id).strip("-.") or "job"


def keep(audios: list[EncodedAudio], job_id: str, folder: Path, ttl_s: int) -> Kept:
    """Write ``audios`` to ``folder/<job id>/`` and log where (the path never goes to the caller)."""
    prune(folder, ttl_s)
    written = 0
    try:
        for audio in audios:
            path = write_bytes_atomically(folder / safe_name(job_id), audio.data, audio.extension)
            written += 1
            log.error("job %s: undelivered audio kept at %s", job_id, path)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        log.error("job %s: %d undelivered audio file(s) could not be kept: %s", job_id, len(audios) - written, err)
        return Kept(written, reason, ttl_s)
    return Kept(written, None, ttl_s)


def prune(folder: Path, ttl_s: int) -> int:
    """Remove job folders (and stray files) last changed more than ``ttl_s`` ago; returns how many."""
    cutoff = time.time() - ttl_s
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.remove(entry.path)
            removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d undelivered job folder(s) older than %d s", removed, ttl_s)
    return removed
