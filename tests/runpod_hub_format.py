"""RunPod's published format of ``.runpod/hub.json`` and ``.runpod/tests.json``, as pydantic models.

From RunPod's Hub publishing guide (https://docs.runpod.io/hub/publishing-guide, "hub.json reference" and
"tests.json reference") and its GPU pool table (https://docs.runpod.io/references/gpu-types#gpu-pools). Unknown
keys are refused, so a misspelt field fails here rather than being ignored by the Hub.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# the pools of the GPU types page, and the ones listed since (RTX 5090, RTX PRO 6000, B200)
GPU_POOLS = {"AMPERE_16", "AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141",
             "ADA_32_PRO", "BLACKWELL_96", "BLACKWELL_180"}
CUDA_VERSION = re.compile(r"^\d+\.\d+$")
GPU_TYPE_ID = re.compile(r"^NVIDIA [A-Za-z0-9 \-]+$")  # a full GPU id, e.g. "NVIDIA GeForce RTX 4090"
ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Option(Strict):
    label: str
    value: str


class EnvInput(Strict):
    name: str
    type: Literal["string", "number", "boolean", "huggingface"]
    description: str
    default: str | int | float | bool | None = None
    advanced: bool = False
    options: list[Option] | None = None
    min: int | float | None = None
    max: int | float | None = None
    trueValue: str | None = None  # noqa: N815 (RunPod's spelling)
    falseValue: str | None = None  # noqa: N815

    @model_validator(mode="after")
    def default_matches_type(self) -> EnvInput:
        expected = {"string": (str,), "huggingface": (str,), "number": (int, float), "boolean": (bool,)}[self.type]
        if self.default is not None and (not isinstance(self.default, expected) or
                                         (self.type == "number" and isinstance(self.default, bool))):
            raise ValueError(f"default {self.default!r} is not a {self.type}")
        if self.options is not None and self.default is not None and \
                self.default not in [o.value for o in self.options]:
            raise ValueError(f"default {self.default!r} is not one of the options")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class EnvEntry(Strict):
    key: str = Field(pattern=ENV_KEY.pattern)
    value: str | None = None
    input: EnvInput | None = None

    @model_validator(mode="after")
    def value_or_input(self) -> EnvEntry:
        if (self.value is None) == (self.input is None):
            raise ValueError(f"{self.key}: an env entry has either a static value or an input")
        return self


class Preset(Strict):
    name: str
    defaults: dict[str, str | int | float | bool]


class HubConfig(Strict):
    runsOn: Literal["GPU", "CPU"]  # noqa: N815
    containerDiskInGb: int = Field(gt=0)  # noqa: N815
    gpuCount: int | None = Field(None, ge=1)  # noqa: N815
    gpuIds: str | None = None  # noqa: N815
    cpuFlavor: str | None = None  # noqa: N815
    allowedCudaVersions: list[str] = []  # noqa: N815
    presets: list[Preset] = []
    env: list[EnvEntry] = []

    @model_validator(mode="after")
    def fits_runs_on(self) -> HubConfig:
        if self.runsOn == "GPU":
            if self.gpuCount is None or not self.gpuIds:
                raise ValueError("a GPU listing needs gpuCount and gpuIds")
            for item in self.gpuIds.split(","):
                item = item.strip()
                if not (item in GPU_POOLS or (item.startswith("-") and GPU_TYPE_ID.match(item[1:]))):
                    raise ValueError(f"gpuIds: {item!r} is neither a GPU pool nor a negated full GPU id")
        elif not self.cpuFlavor:
            raise ValueError("a CPU listing needs cpuFlavor")
        for version in self.allowedCudaVersions:
            if not CUDA_VERSION.match(version):
                raise ValueError(f"allowedCudaVersions: {version!r} is not MAJOR.MINOR")
        keys = [entry.key for entry in self.env]
        if len(keys) != len(set(keys)):
            raise ValueError("env keys repeat")
        for preset in self.presets:
            unknown = set(preset.defaults) - set(keys)
            if unknown:
                raise ValueError(f"preset {preset.name!r} sets keys that env does not list: {sorted(unknown)}")
        return self


class Hub(Strict):
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    type: Literal["serverless"]
    category: Literal["audio", "embedding", "language", "video", "image"]
    iconUrl: str | None = Field(None, pattern=r"^https://")  # noqa: N815
    config: HubConfig


class HubTest(Strict):
    name: str = Field(min_length=1)
    input: dict[str, Any]
    timeout: int | None = Field(None, gt=0)  # milliseconds


class StaticEnv(Strict):
    key: str = Field(pattern=ENV_KEY.pattern)
    value: str


class TestsConfig(Strict):
    gpuTypeId: str | None = Field(None, pattern=GPU_TYPE_ID.pattern)  # noqa: N815
    gpuCount: int | None = Field(None, ge=1)  # noqa: N815
    cpuFlavor: str | None = None  # noqa: N815
    env: list[StaticEnv] = []
    allowedCudaVersions: list[str] = []  # noqa: N815

    @model_validator(mode="after")
    def gpu_or_cpu(self) -> TestsConfig:
        if (self.gpuTypeId is None) == (self.cpuFlavor is None):
            raise ValueError("tests run on a GPU (gpuTypeId, gpuCount) or a CPU (cpuFlavor)")
        if self.gpuTypeId is not None and self.gpuCount is None:
            raise ValueError("gpuTypeId needs gpuCount")
        for version in self.allowedCudaVersions:
            if not CUDA_VERSION.match(version):
                raise ValueError(f"allowedCudaVersions: {version!r} is not MAJOR.MINOR")
        return self


class Tests(Strict):
    tests: list[HubTest] = Field(min_length=1)
    config: TestsConfig
