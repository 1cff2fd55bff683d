"""The Dockerfile and the RunPod Hub files, checked without Docker (no engine runs here): hadolint, every
COPY source present, the entrypoint's modes, no secret in an ENV or ARG default, pins for every dependency."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib

import pytest

from inference.schema import parse_generate_request
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY)", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    done = subprocess.run([hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_copy_source_exists_and_is_not_ignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    for name, args in instructions():
        if name != "COPY" or "--from=" in args:
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


def test_entrypoint_exists_and_runs_both_modes_only():
    [entrypoint] = [json.loads(args) for name, args in instructions() if name == "ENTRYPOINT"]
    script = ROOT / entrypoint[0].removeprefix("/app/")
    assert script.is_file() and script.stat().st_mode & 0o111
    text = script.read_text()
    assert "exec python -u /app/handler.py" in text and "exec python -m api_shim" in text
    done = subprocess.run(["sh", str(script)], env={"MODE": "desktop", "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "MODE must be 'serverless' or 'pod'" in done.stderr


def test_no_secret_in_env_or_arg_defaults():
    for name, args in instructions():
        if name == "ARG":
            key, _, default = args.partition("=")
            assert not (SECRET_NAME.search(key) and default), args
        if name == "ENV":
            for key, value in re.findall(r"(\w+)=(\S*)", args):
                assert not (SECRET_NAME.search(key) and value), key
    assert "--mount=type=secret,id=hf_token,env=HF_TOKEN" in DOCKERFILE  # the token only as a build secret
    assert re.search(r"HF_HUB_OFFLINE=1", DOCKERFILE)


def test_the_build_fetches_converts_and_verifies():
    runs = " ".join(args for name, args in instructions() if name == "RUN")
    for step in ("builder.fetch_checkpoints", "builder.convert", "builder.verify"):
        assert step in runs
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", DOCKERFILE).group(1)
    assert base.startswith("nvidia/cuda:") and "runtime" in base and "FROM ${CUDA_IMAGE} AS base" in DOCKERFILE


def test_constraints_pin_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"==", line)[0].lower().replace("_", "-"): line
            for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", requirement)[0].lower().replace("_", "-")
        if name == "torch":
            continue  # pinned by TORCH_VERSION in the Dockerfile, with its CUDA build
        assert name in pins, f"{name} is not pinned in constraints.txt"


@pytest.mark.parametrize("name", ["hub.json", "tests.json"])
def test_runpod_hub_files(name):
    data = json.loads((ROOT / ".runpod" / name).read_text())
    if name == "hub.json":
        assert data["type"] == "serverless" and data["config"]["runsOn"] == "GPU"
        assert all(not SECRET_NAME.search(e["key"]) or e["input"]["default"] == "" for e in data["config"]["env"])
    else:
        assert data["tests"]
        for test in data["tests"]:
            if test["input"].get("action", "generate") == "generate":
                parse_generate_request(test["input"])  # every Hub test is a valid request
