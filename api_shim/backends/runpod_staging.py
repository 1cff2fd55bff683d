"""Audio inputs too big for a RunPod job's payload, passed through the shim's bucket instead.

RunPod takes at most about 10 MB of job input for ``/run``, and an uploaded file travels in it as base64 (a
third larger). When the shim has a bucket (``BUCKET_*``) and a job would not fit, each audio input is put
in the bucket under ``<BUCKET_PREFIX>/inputs/<task>/`` and the job carries a presigned GET URL for it instead
(``src_audio_url`` / ``reference_audio_url``), which the worker fetches under the same guard as any audio URL:
the bucket must therefore be on an address the worker may reach (public, or ``ACESTEP_ALLOW_PRIVATE_ENDPOINTS``
on the worker). The link lives as long as the task may (``ACESTEP_TASK_TIMEOUT``, at most SigV4's 7 days); the
objects are removed when the task ends. Without a bucket such a job is refused with 413 and what to do.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from inference.contract import GenerateRequest
from inference.contract.normalise import without_fields
from inference.contract.vocabulary import AUDIO_URL_FIELDS
from inference.delivery.buckets import CLIENTS, BucketConfig, bucket_from_settings, s3_reason
from inference.settings import Settings

log = logging.getLogger("acestep.shim.runpod")
ATTEMPTS = 2  # tries per bucket call (botocore's standard mode)
STAGED_KEY = "staged_inputs:{}"  # task id -> the bucket keys of its staged inputs, in the store's shim_values
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's longest presigned URL
URL_ROOM_BYTES = 4096  # what the presigned links add to a job, at most
URL_FOR_FILE = {file_field: url_field for url_field, file_field in AUDIO_URL_FIELDS.items()}


def staging_bucket(settings: Settings) -> BucketConfig | None:
    return bucket_from_settings(settings) if settings.env_bucket_configured else None


def without_audio_inputs(job_input: dict[str, Any]) -> dict[str, Any]:
    """The job input with its base64 audio inputs removed, in whatever form and container they came."""
    return without_fields(job_input, frozenset(URL_FOR_FILE), frozenset(GenerateRequest.model_fields))


def planned_keys(request: GenerateRequest, config: BucketConfig, task_id: str) -> dict[str, str]:
    """Where each of the request's audio inputs goes: ``<prefix>/inputs/<task id>/<src_audio|reference_audio>.<ext>``,
    known before anything is uploaded (so it is recorded first, and a crash in between leaves nothing unknown)."""
    prefix = config.prefix.strip("/")
    folder = f"{prefix}/inputs/{task_id}" if prefix else f"inputs/{task_id}"
    return {file_field: f"{folder}/{url_field.removesuffix('_url')}.{_extension(data)}"
            for file_field, url_field in URL_FOR_FILE.items() if (data := request.audio_input(file_field))}


def upload_inputs(request: GenerateRequest, config: BucketConfig, keys: dict[str, str], expiry_s: float
                  ) -> dict[str, str]:
    """Put each audio input at its key; the presigned GET URL of each, by URL field. Blocking (boto3)."""
    client = CLIENTS.get(config, ATTEMPTS)  # the shim's bucket: one client, kept
    urls = {}
    for file_field, key in keys.items():
        client.put_object(Bucket=config.bucket, Key=key, Body=request.audio_input(file_field))
        urls[URL_FOR_FILE[file_field]] = client.generate_presigned_url(
            "get_object", Params={"Bucket": config.bucket, "Key": key},
            ExpiresIn=int(min(max(expiry_s, 60), MAX_PRESIGN_S)))
    return urls


def _extension(data: bytes) -> str:
    import soundfile as sf

    try:
        kind = sf.info(io.BytesIO(data)).format.lower()  # the header was checked when the request was read
    except Exception:  # noqa: BLE001
        return "audio"
    return kind if kind in ("wav", "flac", "ogg", "mp3") else "audio"


def remove_staged(config: BucketConfig, keys: list[str]) -> list[str]:
    """Delete staged inputs (a key that is not there counts as deleted); returns the keys that could not be."""
    if not keys:
        return []
    failed = []
    client = CLIENTS.get(config, ATTEMPTS)
    for key in keys:
        try:
            client.delete_object(Bucket=config.bucket, Key=key)
        except Exception as err:  # noqa: BLE001 - kept, and tried again at the next start
            failed.append(key)
            log.warning("removing staged audio input %s failed (%s); tried again at the next start", key,
                        s3_reason(err))
    return failed

