"""Errors a user may see, and how any other failure is turned into a safe one-line message.

Every message that leaves the worker is one line, names what was wrong, and carries no local path
and no secret: ``public_message`` enforces that for errors the code did not anticipate.
"""

from __future__ import annotations

import re


class AceStepError(Exception):
    """Base class: ``str(err)`` is a one-line message that is safe to return to the caller."""


class InputError(AceStepError):
    """The request is invalid; the message names the field and what is allowed."""


class UnsupportedError(AceStepError):
    """The request is valid, but this deployment cannot serve it (e.g. it needs a model not loaded)."""


class CheckpointError(AceStepError):
    """The checkpoint is missing or broken; the message says what was looked for and how to get it."""


class CachedModelError(CheckpointError):
    """The host's model cache lacks the checkpoint or holds it half-downloaded: a later worker may find it whole,
    so the worker stays up, answers each job with this, and asks RunPod for a fresh worker."""


class SetupError(CheckpointError):
    """A setting cannot be honoured on this machine (e.g. an attention kernel that is not installed); like a
    broken checkpoint, the worker cannot serve until it is changed."""


class GenerationError(AceStepError):
    """Generation failed (e.g. out of GPU memory); the message says what to change."""


class StorageError(AceStepError):
    """The audio was made but could not be delivered; it is kept on the worker's disk. ``uploaded`` lists the
    audios of the job that did reach the bucket before the failure (``inference.delivery.Delivered``)."""

    def __init__(self, message: str, uploaded: list | None = None):
        super().__init__(message)
        self.uploaded = list(uploaded or [])


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+-]+/)*[\w.@+-]+")
_URL_CREDENTIALS = re.compile(r"(https?://)[^/@\s]+@")
_QUERY_SIGNATURE = re.compile(r"([?&](?:X-Amz-[\w-]+|Signature|AWSAccessKeyId|Expires)=)[^&\s]+", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove local paths, credentials in URLs, presigned signatures and the given secret values."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _QUERY_SIGNATURE.sub(r"\1***", text)
    return _ABSOLUTE_PATH.sub("<path>", text)


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def public_message(err: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The message a caller sees for ``err``: ours verbatim, anything else named and scrubbed."""
    if isinstance(err, AceStepError):
        return one_line(redact(str(err), secrets))
    detail = redact(str(err), secrets)
    return one_line(f"internal error ({type(err).__name__}: {detail})" if detail else
                    f"internal error ({type(err).__name__})")


class CancelledJob(AceStepError):
    """Every job of a render stopped waiting for it (RunPod cancelled them, or their timeout passed)."""
