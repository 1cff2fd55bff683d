"""The adapters of a worker: found and checked when a job is admitted, applied on the GPU thread per batch.

``resolve`` (admission thread: never the GPU's) turns a request's ``lora`` into checked adapters. An adapter
is known by its content's digest, so the same file named two ways is one adapter, and a name whose file is
unchanged (place, size, modification time) is not even read again: the second request for an adapter pays
nothing. ``activate`` (GPU thread, between renders, so a load never stops a running generation) puts into
the DiT, through diffusers and PEFT, whichever of the batch's adapters it does not hold yet, sets exactly
those active at their scales, or switches every adapter off for a batch without any: PEFT then calls the
original layers alone, so a job without LoRA renders what it would have rendered had no adapter ever been
loaded. Adapters stay loaded up to ``ACESTEP_LORA_CACHE`` MiB; past it the least recently used ones not in use
are deleted from the model.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inference.contract.lora import LoraRef
from inference.errors import InputError
from inference.lora.adapter import Adapter, content_digest, linear_shapes, parse_adapter
from inference.lora.files import all_named, fetched, named, read_named
from inference.settings import Settings

log = logging.getLogger("acestep.lora")


@dataclass(frozen=True)
class Active:
    """An adapter a job renders with, at its scale."""

    adapter: Adapter
    scale: float


def batch_part(actives: Sequence[Active]) -> tuple:
    """What of a job's adapters must be equal for jobs to share a pipeline call."""
    return tuple(sorted((a.adapter.digest, a.scale) for a in actives))


class LoraLibrary:
    def __init__(self, settings: Settings, transformer: Any):
        self.folder = settings.lora_folder
        self.budget = settings.lora_cache_bytes
        self.settings = settings
        self.shapes = linear_shapes(transformer)
        self._kept: OrderedDict[str, Adapter] = OrderedDict()  # digest -> adapter, the most recently used last
        self._stamps: dict[tuple, str] = {}  # a named file, unchanged -> its digest
        self._in_model: set[str] = set()  # adapter names loaded into the DiT (GPU thread only)
        self._lock = threading.Lock()
        self.reads = 0  # adapters read and checked (not found kept)
        self.load_s = 0.0  # time spent reading and checking them

    # --- admission -------------------------------------------------------------------------------------------
    def resolve(self, refs: Sequence[LoraRef], s3_config: Any = None) -> tuple[Active, ...]:
        """A request's adapters, checked; those at scale 0 are checked and then left out (0 = off)."""
        out: list[Active] = []
        for index, ref in enumerate(refs):
            field = f"lora[{index}]"
            adapter = self._adapter(ref, field, s3_config)
            if any(a.adapter.digest == adapter.digest for a in out):
                raise InputError(f"{field}: the same adapter as an earlier one; give it once, at the scale wanted")
            out.append(Active(adapter, ref.scale))
        return tuple(a for a in out if a.scale > 0)

    def _adapter(self, ref: LoraRef, field: str, s3_config: Any) -> Adapter:
        stamp = None
        if ref.name is not None:
            found = named(self.folder, ref.name)
            if found is None:
                where = "ACESTEP_LORA_DIR" if self.folder is not None else "ACESTEP_LORA_DIR (not set on this worker)"
                raise InputError(f"{field}.name: no adapter {ref.name!r} in {where}")
            stamp = found.stamp
            with self._lock:
                if (kept := self._kept.get(self._stamps.get(stamp, ""))) is not None:
                    self._kept.move_to_end(kept.digest)
                    return kept
            data, config = read_named(found, field, self.settings.lora_max_bytes)
        else:
            data, config = fetched(ref, field, self.settings, s3_config), None
        digest = content_digest(data, config)
        with self._lock:
            if (kept := self._kept.get(digest)) is not None:
                self._kept.move_to_end(digest)
                if stamp is not None:
                    self._stamps[stamp] = digest
                return kept
        started = time.perf_counter()
        adapter = parse_adapter(data, field, self.shapes, config)
        with self._lock:
            self.reads += 1
            self.load_s += time.perf_counter() - started
            self._kept[adapter.digest] = adapter
            if stamp is not None:
                self._stamps[stamp] = adapter.digest
        return adapter

    # --- the GPU thread --------------------------------------------------------------------------------------
    def activate(self, pipe, actives: Sequence[Active]) -> None:
        """Make exactly ``actives`` the adapters the next pipeline call renders with."""
        for active in actives:
            adapter = active.adapter
            if adapter.name not in self._in_model:
                with warnings.catch_warnings():  # several adapters in one model is the point here
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    pipe.transformer.load_lora_adapter(dict(adapter.tensors), prefix=None, adapter_name=adapter.name,
                                                       metadata=adapter.peft_metadata())
                self._in_model.add(adapter.name)
                log.info("LoRA %s loaded into the DiT (%d modules, %.1f MiB)", adapter.name, len(adapter.ranks),
                         adapter.nbytes / 2**20)
            with self._lock:
                self._kept[adapter.digest] = adapter
                self._kept.move_to_end(adapter.digest)
        self._trim(pipe, {a.adapter.name for a in actives})
        if actives:
            pipe.enable_lora()
            pipe.set_adapters([a.adapter.name for a in actives], [a.scale for a in actives])
        elif self._in_model:
            pipe.disable_lora()

    def _trim(self, pipe, in_use: set[str]) -> None:
        """Drop the least recently used adapters not in use while the kept ones exceed the budget."""
        with self._lock:
            total = sum(a.nbytes for a in self._kept.values())
            dropped = []
            for digest, adapter in list(self._kept.items()):
                if total <= self.budget:
                    break
                if adapter.name in in_use:
                    continue
                del self._kept[digest]
                total -= adapter.nbytes
                dropped.append(adapter.name)
            self._stamps = {s: d for s, d in self._stamps.items() if d in self._kept}
        gone = [name for name in dropped if name in self._in_model]
        if gone:
            pipe.delete_adapters(gone)
            self._in_model.difference_update(gone)

    # --- what it has -----------------------------------------------------------------------------------------
    def available(self) -> list[dict]:
        """The adapters under ``ACESTEP_LORA_DIR``: name, layout, size."""
        return [{"name": n.name, "layout": n.layout, "bytes": n.size} for n in all_named(self.folder)]

    def kept(self) -> list[str]:
        with self._lock:
            return [a.name for a in self._kept.values()]
