"""Where the shim's work is done: ``local`` (in this process) or ``runpod`` (a serverless endpoint)."""

from __future__ import annotations

from typing import Any, Protocol

from api_shim.models import Backend as BackendName
from api_shim.models import HealthData, QueryResultItem, ReleaseTaskData, StatsData
from api_shim.task_store import TaskStore
from inference.contract import FormatInputResponse, ModelsResponse
from inference.settings import Settings


class Backend(Protocol):
    name: BackendName
    store: TaskStore

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def health(self) -> HealthData: ...
    async def submit(self, body: dict[str, Any]) -> ReleaseTaskData: ...
    async def query(self, task_ids: list[str]) -> list[QueryResultItem]: ...
    async def models(self) -> ModelsResponse: ...
    async def format_input(self, body: dict[str, Any]) -> FormatInputResponse: ...
    async def stats(self) -> StatsData: ...


def make_backend(settings: Settings, store: TaskStore) -> Backend:
    if settings.shim_uses_runpod:
        from api_shim.backends.runpod import RunPodBackend

        return RunPodBackend(settings, store)
    from api_shim.backends.local import LocalBackend

    return LocalBackend(settings, store)
