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
from inference.delivery.buckets import BucketConfig, bucket_from_settings, make_client
from inference.settings import Settings

log = logging.getLogger("acestep.shim.runpod")
STAGED_KEY = "staged_inputs:{}"  # task id -> the bucket keys of its staged inputs, in the store's shim_values
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's longest presigned URL
URL_FOR_FILE = {file_field: url_field for url_field, file_field in AUDIO_URL_FIELDS.items()}


def staging_bucket(settings: Settings) -> BucketConfig | None:
    return bucket_from_settings(settings) if settings.env_bucket_configured else None


def stage_inputs(request: GenerateRequest, body: dict[str, Any], config: BucketConfig, expiry_s: float,
                 task_id: str) -> tuple[dict[str, Any], list[str]]:
    """The job input with the request's audio inputs replaced by presigned URLs of copies in the bucket, and the
    keys of those copies. Runs off the event loop (boto3 is blocking)."""
    prefix = config.prefix.strip("/")
    folder = f"{prefix}/inputs/{task_id}" if prefix else f"inputs/{task_id}"
    client = make_client(config)
    keys: list[str] = []
    urls: dict[str, str] = {}
    try:
        for file_field, url_field in URL_FOR_FILE.items():
            data = request.audio_input(file_field)
            if not data:
                continue
            extension = _extension(data)
            key = f"{folder}/{url_field.removesuffix('_url')}.{extension}"
            client.put_object(Bucket=config.bucket, Key=key, Body=data)
            keys.append(key)
            urls[url_field] = client.generate_presigned_url(
                "get_object", Params={"Bucket": config.bucket, "Key": key},
                ExpiresIn=int(min(max(expiry_s, 60), MAX_PRESIGN_S)))
    except Exception:
        remove_staged(config, keys)
        raise
    finally:
        client.close()
    job_input = without_fields(body, frozenset(URL_FOR_FILE), frozenset(GenerateRequest.model_fields))
    return {**job_input, **urls}, keys


def _extension(data: bytes) -> str:
    import soundfile as sf

    try:
        kind = sf.info(io.BytesIO(data)).format.lower()  # the header was checked when the request was read
    except Exception:  # noqa: BLE001
        return "audio"
    return kind if kind in ("wav", "flac", "ogg", "mp3") else "audio"


def remove_staged(config: BucketConfig, keys: list[str]) -> None:
    """Delete staged inputs; a failure is logged, not raised (the task's outcome does not depend on it)."""
    if not keys:
        return
    client = make_client(config)
    try:
        for key in keys:
            try:
                client.delete_object(Bucket=config.bucket, Key=key)
            except Exception as err:  # noqa: BLE001
                log.warning("removing a staged audio input from bucket '%s' failed: %s", config.bucket,
                            type(err).__name__)
    finally:
        client.close()
