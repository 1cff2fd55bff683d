"""Where an adapter's bytes come from: a name under ``ACESTEP_LORA_DIR``, the job's bucket, or a URL.

Under the folder an adapter ``<name>`` is a file ``<name>.safetensors``, or a folder ``<name>/`` holding what
diffusers' ``save_lora_weights`` writes (``pytorch_lora_weights.safetensors``) or what ACE-Step's trainer
writes (``adapter_model.safetensors`` with ``adapter_config.json``). By bucket or URL it is one safetensors file,
fetched under the same guards as audio inputs (public addresses only, the job's own bucket credentials), at
most ``ACESTEP_LORA_MAX_MB``. Sizes are checked before anything is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.audio_fetch import Fetched, fetch_http, from_bucket, too_large
from inference.contract.lora import NAME, LoraRef
from inference.endpoints import public_address
from inference.errors import InputError
from inference.settings import Settings

FOLDER_FILES = (("pytorch_lora_weights.safetensors", "diffusers"), ("adapter_model.safetensors", "ace-step"))
ADAPTER_CONFIG = "adapter_config.json"
FETCH_TIMEOUT_S = 120.0  # adapters are larger than most audio inputs


@dataclass(frozen=True)
class Named:
    """An adapter under ``ACESTEP_LORA_DIR``."""

    name: str
    file: Path
    layout: str  # "file", "diffusers" or "ace-step"
    size: int
    config: Path | None = None

    @property
    def stamp(self) -> tuple:
        """What says the file is unchanged since it was last read (its place, size and modification time)."""
        try:
            stat = self.file.stat()
            return str(self.file), stat.st_size, stat.st_mtime_ns, self.config and self.config.stat().st_mtime_ns
        except OSError:  # gone since it was found: read (and refused) as such
            return (str(self.file), None)


def named(lora_dir: Path | None, name: str) -> Named | None:
    """The adapter called ``name`` in the folder, if there is one."""
    if lora_dir is None or not NAME.fullmatch(name):
        return None
    single = lora_dir / f"{name}.safetensors"
    if single.is_file():
        return Named(name, single, "file", single.stat().st_size)
    folder = lora_dir / name
    for file_name, layout in FOLDER_FILES:
        file = folder / file_name
        if file.is_file():
            config = folder / ADAPTER_CONFIG
            return Named(name, file, layout, file.stat().st_size, config if config.is_file() else None)
    return None


def all_named(lora_dir: Path | None) -> list[Named]:
    """Every adapter in the folder, by name (what ``/v1/models`` lists)."""
    if lora_dir is None or not lora_dir.is_dir():
        return []
    names = {p.name.removesuffix(".safetensors") if p.is_file() else p.name for p in lora_dir.iterdir()}
    return [found for name in sorted(names) if (found := named(lora_dir, name)) is not None]


def read_named(found: Named, field: str, max_bytes: int) -> tuple[bytes, dict | None]:
    """The file's bytes and the trainer's config beside it (the alpha), size checked first."""
    if found.size > max_bytes:
        raise too_large(field, Fetched("adapter", max_bytes))
    config = None
    if found.config is not None:
        try:
            config = json.loads(found.config.read_text())
        except (OSError, ValueError):
            raise InputError(f"{field}: the adapter's {ADAPTER_CONFIG} is not readable JSON") from None
        if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
            raise InputError(f"{field}: the adapter's {ADAPTER_CONFIG} is not a LoRA's (peft_type LORA)")
    try:
        return found.file.read_bytes(), config
    except OSError:
        raise InputError(f"{field}: the adapter could not be read") from None


def fetched(ref: LoraRef, field: str, settings: Settings, s3_config: Any) -> bytes:
    """An adapter given by ``path`` (the job's bucket) or ``url``."""
    kind = Fetched("adapter", settings.lora_max_bytes)
    if ref.path is not None:
        return from_bucket(ref.path, field, settings, s3_config, kind, FETCH_TIMEOUT_S)
    return fetch_http(ref.url, field, lambda url, f: public_address(url, f, settings.allow_private_endpoints),
                      FETCH_TIMEOUT_S, kind)
