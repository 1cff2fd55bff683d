"""Upstream's ``/v1/lora/*`` routes in pod mode: the server's default adapters, for tasks that name none.

Upstream keeps one set of adapters in the process for every request. Here a task's own ``lora`` field always
wins, and these routes keep the adapters a task without one renders with: ``load`` (``lora_path``: an adapter
of ``ACESTEP_LORA_DIR``, by name or by its path there; with ``adapter_name`` it joins the set, without it
replaces the set), ``unload`` (the set emptied), ``toggle`` (``use_lora``: the set on or off), ``scale``
(``scale``, for ``adapter_name`` or every adapter), ``status``. ``load`` checks the adapter through the
worker's own adapter cache, so a later task pays nothing for it. Request and answer shapes are upstream's
(``acestep/api/http/lora_routes.py``), inside the usual envelope; ``scale`` takes 0-2 where upstream stops at 1.
In front of RunPod the adapters live on the workers: these routes answer 501, and a task names its adapters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field, ValidationError

from api_shim.envelope import ApiError, failure, ok
from api_shim.requests_in import authorize
from inference.contract import GenerateRequest
from inference.contract.lora import LORA_MAX_ADAPTERS, LORA_SCALE_MAX, NAME, LoraRef
from inference.contract.messages import describe_validation_error
from inference.errors import InputError
from inference.settings import Settings


class LoadLoraRequest(BaseModel):
    lora_path: str = Field(max_length=4096, description="An adapter of ACESTEP_LORA_DIR: its name or its path there.")
    adapter_name: str | None = Field(None, max_length=128, description="A label; given, the adapter joins the set.")


class ScaleLoraRequest(BaseModel):
    scale: float = Field(ge=0.0, le=LORA_SCALE_MAX)
    adapter_name: str | None = Field(None, max_length=128)


class ToggleLoraRequest(BaseModel):
    use_lora: bool


class LoraDefaults:
    """The adapters a task without ``lora`` renders with: label -> (name, scale), in loading order."""

    def __init__(self):
        self.entries: dict[str, tuple[str, float]] = {}
        self.use_lora = True
        self._lock = threading.Lock()

    def apply(self, request: GenerateRequest) -> GenerateRequest:
        """``request`` with the default adapters when it names none, wherever it could have (a ``lora`` of its
        own, even empty, wins)."""
        with self._lock:
            if "lora" in request.model_fields_set or not self.use_lora or not self.entries:
                return request
            defaults = [LoraRef(name=name, scale=scale) for name, scale in self.entries.values()]
        return request.model_copy(update={"lora": defaults})

    def load(self, name: str, label: str | None) -> str:
        """``name`` joins the set under ``label``, or, without one, becomes the whole set; the label used."""
        with self._lock:
            if label is None:
                self.entries.clear()
            label = label or name
            if any(n == name and other != label for other, (n, _) in self.entries.items()):
                raise ApiError(400, f"lora_path: {name!r} is loaded already, under another adapter_name")
            if label not in self.entries and len(self.entries) >= LORA_MAX_ADAPTERS:
                raise ApiError(400, f"at most {LORA_MAX_ADAPTERS} adapters at once: unload one first")
            self.entries[label] = (name, self.entries.get(label, (name, 1.0))[1])
            return label

    def unload(self) -> bool:
        """No default adapters; whether there were any."""
        with self._lock:
            had = bool(self.entries)
            self.entries.clear()
            return had

    def toggle(self, use_lora: bool) -> bool:
        """Switch the set on or off; False when there is none to switch."""
        with self._lock:
            if not self.entries:
                return False
            self.use_lora = use_lora
            return True

    def scale(self, scale: float, label: str | None) -> str | None:
        """Set the scale of ``label``, or of every adapter; the refusal when there is one."""
        with self._lock:
            if label is not None and label not in self.entries:
                return f"Adapter '{label}' not in loaded adapters: {list(self.entries)}"
            for each in [label] if label else list(self.entries):
                self.entries[each] = (self.entries[each][0], scale)
            return None

    def status(self, available: list[str]) -> dict[str, Any]:
        with self._lock:
            scales = {label: scale for label, (_, scale) in self.entries.items()}
            labels = list(self.entries)
            return {"lora_loaded": bool(labels), "use_lora": self.use_lora and bool(labels),
                    "lora_scale": scales[labels[-1]] if labels else 1.0, "adapter_type": "lora" if labels else None,
                    "scales": scales, "active_adapter": labels[-1] if labels else None, "adapters": labels,
                    "synthetic_default_mode": False, "available": available}


def adapter_name_of(lora_path: str, folder: Path | None) -> str:
    """The adapter ``lora_path`` names: a bare name, ``<name>.safetensors``, or a path inside the folder."""
    text = lora_path.strip().rstrip("/")
    path = Path(text)
    if path.is_absolute() and folder is not None:
        try:
            path = path.resolve().relative_to(folder.resolve())
        except (ValueError, OSError):
            raise ApiError(400, "lora_path must be an adapter of ACESTEP_LORA_DIR (its name, or its path "
                                "there)") from None
    name = str(path).removesuffix(".safetensors")
    if len(path.parts) != 1 or not NAME.fullmatch(name) or ".." in name:
        raise ApiError(400, "lora_path must be an adapter of ACESTEP_LORA_DIR (its name, or its path there)")
    return name


def _parsed(model: type[BaseModel], body: dict[str, Any]):
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise ApiError(400, describe_validation_error(err, model)) from None


def register_lora_routes(app: FastAPI, settings: Settings, read_object: Callable[[Request], Awaitable[dict]]) -> None:
    """The routes, reading their small bodies with ``read_object`` (the shim's size-limited JSON reader)."""

    def defaults_of(request: Request) -> tuple[LoraDefaults, Any]:
        authorize(request, settings)
        backend = request.app.state.backend
        defaults = getattr(backend, "lora_defaults", None)
        if defaults is None:
            raise ApiError(501, "in front of RunPod the adapters live on the workers: name them per task (lora)")
        return defaults, backend

    @app.post("/v1/lora/load")
    async def lora_load(request: Request):
        """Check an adapter and add it to (with ``adapter_name``) or make it (without) the default set."""
        defaults, backend = defaults_of(request)
        body = _parsed(LoadLoraRequest, await read_object(request))
        name = adapter_name_of(body.lora_path, settings.lora_folder)
        service = backend._require_ready()
        try:
            await asyncio.to_thread(service.lora.resolve, [LoraRef(name=name)])
        except InputError as err:
            raise ApiError(400, str(err).replace("lora[0].name", "lora_path").replace("lora[0]", "lora_path")) from None
        given = (body.adapter_name or "").strip() or None  # upstream reads an empty name as none
        label = defaults.load(name, given)
        data = {"message": f"LoRA '{label}' loaded from {body.lora_path}", "lora_path": body.lora_path}
        if given is not None:
            data["adapter_name"] = body.adapter_name
        return ok(data)

    @app.post("/v1/lora/unload")
    async def lora_unload(request: Request):
        defaults, _ = defaults_of(request)
        return ok({"message": "LoRA unloaded, using base model" if defaults.unload() else "No LoRA adapter loaded."})

    @app.post("/v1/lora/toggle")
    async def lora_toggle(request: Request):
        defaults, _ = defaults_of(request)
        body = _parsed(ToggleLoraRequest, await read_object(request))
        if not defaults.toggle(body.use_lora):
            return failure(400, "No LoRA adapter loaded. Please load a LoRA first.", http_status=200)
        return ok({"message": f"LoRA {'enabled' if body.use_lora else 'disabled'}", "use_lora": body.use_lora})

    @app.post("/v1/lora/scale")
    async def lora_scale(request: Request):
        defaults, _ = defaults_of(request)
        body = _parsed(ScaleLoraRequest, await read_object(request))
        if not defaults.entries:
            return ok({"message": "No LoRA loaded", "scale": body.scale})
        refusal = defaults.scale(body.scale, body.adapter_name)
        if refusal is not None:
            return failure(400, refusal, http_status=200)
        data = {"message": f"LoRA scale ({body.adapter_name or 'all'}): {body.scale:.2f}", "scale": body.scale}
        if body.adapter_name is not None:
            data["adapter_name"] = body.adapter_name
        return ok(data)

    @app.get("/v1/lora/status")
    async def lora_status(request: Request):
        defaults, backend = defaults_of(request)
        service = backend._require_ready()
        return ok(defaults.status([a["name"] for a in service.lora.available()]))
