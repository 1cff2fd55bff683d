"""Typed bodies of the shim's own endpoints (docs/api.md). Generation fields are ``inference.contract``'s."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator


Backend = Literal["local", "runpod"]
QUEUED_OR_RUNNING, SUCCEEDED, FAILED = 0, 1, 2
DEFAULT_AVG_JOB_S = 5.0  # /v1/stats before any job has finished, as upstream starts


class HealthData(BaseModel):
    status: Literal["ok", "starting", "unavailable"]
    service: str = "ACE-Step API"
    version: str = "1.0"
    models_loaded: bool
    models_initialized: bool = Field(False, description="Upstream's name for models_loaded.")
    llm_initialized: bool = Field(False, description="Whether the 5 Hz LM is loaded (as far as the shim knows).")
    loaded_model: str | None = Field(None, description="The DiT served.")
    loaded_lm_model: str | None = Field(None, description="The 5 Hz LM served, if any.")
    backend: Backend
    error: str | None = Field(None, description="Why the service cannot serve jobs, when it cannot.")

    @model_validator(mode="after")
    def _upstream_names(self):
        self.models_initialized = self.models_loaded
        return self

    @model_serializer(mode="wrap")
    def _drop_empty_error(self, handler):
        data = handler(self)
        if data.get("error") is None:
            data.pop("error", None)
        return data


class ReleaseTaskData(BaseModel):
    task_id: str
    status: Literal["queued"] = "queued"
    queue_position: int = Field(ge=1)
    warnings: list[str] = Field(default_factory=list, description="Ignored fields and other notes.")


class QueryResultRequest(BaseModel):
    """``task_id_list`` (a list or a JSON string of one); ``task_ids`` is accepted as an alias."""

    model_config = ConfigDict(extra="ignore")

    task_id_list: list[str] = Field(default_factory=list, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, data: Any):
        if isinstance(data, dict) and "task_id_list" not in data and "task_ids" in data:
            data = {**data, "task_id_list": data["task_ids"]}
        return data

    @field_validator("task_id_list", mode="before")
    @classmethod
    def _json_string(cls, value):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value] if value.strip() else []
        return value


class QueryResultItem(BaseModel):
    task_id: str
    status: Literal[0, 1, 2] = Field(description="0 queued or running, 1 succeeded, 2 failed")
    result: str = Field(description="A JSON string: a list with one object per audio (see docs/api.md)")
    progress_text: str = ""


class JobCounts(BaseModel):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0


class StatsData(BaseModel):
    jobs: JobCounts
    queue_size: int
    queue_maxsize: int
    avg_job_seconds: float = Field(description=f"Mean seconds of the finished jobs; {DEFAULT_AVG_JOB_S} before any "
                                               f"(upstream's starting value), so it is always a number.")

