"""The Dockerfile and the RunPod Hub files, checked without building: the declared frontend supports every
feature used, hadolint, every COPY source present, layers ordered so a .py edit keeps the dependency and
checkpoint layers, the entrypoint's modes and commands, no secret in an ENV or ARG default, pins for every
dependency, and the Hub files in RunPod's published format. ``make image-smoke`` builds and runs the image."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field

import pytest

from inference.contract import parse_generate_request
from tests import runpod_hub_format as hub_format
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY)", re.I)
CODE = ("inference", "api_shim", "client", "handler.py", "generate_music.py")

# The first dockerfile frontend with each feature (BuildKit's release notes,
# https://docs.docker.com/build/buildkit/dockerfile-release-notes/, and the reference's "Minimum Dockerfile
# version" column, https://github.com/moby/buildkit/blob/master/frontend/dockerfile/docs/reference.md).
# (instruction, option pattern, version). An option of RUN/COPY/ADD missing here fails the check, so a new one
# must be added with its version.
FEATURES = (
    ("COPY", r"--from=", (1, 0)), ("COPY", r"--chown=", (1, 0)), ("ADD", r"--chown=", (1, 0)),
    ("RUN", r"--mount=", (1, 2)), ("COPY", r"--chmod=", (1, 2)), ("ADD", r"--chmod=", (1, 2)),
    ("RUN", r"--network=", (1, 3)), ("COPY", r"--link\b", (1, 4)), ("ADD", r"--link\b", (1, 4)),
    ("ADD", r"--checksum=", (1, 6)), ("RUN", r"--mount=(?=\S*\btype=secret)(?=\S*\benv=)", (1, 10)),
    ("COPY", r"--exclude=", (1, 19)), ("ADD", r"--exclude=", (1, 19)), ("COPY", r"--parents\b", (1, 20)),
    ("RUN", r"--security=", (1, 20)),
)
SYNTAX = ((re.compile(r"<<-?[\"']?[A-Za-z_]"), (1, 4), "a heredoc"),
          (re.compile(r"\$\{\w+(#|%|/)"), (1, 7), "${var#...}, ${var%...} or ${var/...}"))
CHECK_DIRECTIVE = re.compile(r"^#\s*check=", re.M)


def logical_lines(text: str) -> list[str]:
    """Instructions with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in logical_lines(text)]


def declared_frontend(text: str) -> tuple[int, int]:
    match = re.match(r"#\s*syntax=docker/dockerfile:(\d+)\.(\d+)(?:\.\d+)?\s*\n", text)
    assert match, "the first line must pin the frontend: # syntax=docker/dockerfile:1.N"
    return int(match.group(1)), int(match.group(2))


def frontend_problems(text: str) -> list[str]:
    """Every feature that needs a newer frontend than the syntax line declares, or that the table lacks."""
    declared = declared_frontend(text)
    problems = []

    def needs(version: tuple[int, int], what: str) -> None:
        if version > declared:
            problems.append(f"{what} needs dockerfile:{version[0]}.{version[1]}")

    for name, args in instructions(text):
        if name not in ("RUN", "COPY", "ADD"):
            continue
        for option in args.split():
            if not option.startswith("--"):
                break  # options come first; the rest is the command or the sources
            versions = [version for inst, pattern, version in FEATURES if inst == name and re.match(pattern, option)]
            if versions:
                needs(max(versions), f"{name} {option}")
            else:
                problems.append(f"{name} {option}: not in the feature table")
    code = "\n".join(logical_lines(text))
    for pattern, version, what in SYNTAX:
        if pattern.search(code):
            needs(version, what)
    if CHECK_DIRECTIVE.search(text):
        needs((1, 8), "the # check= directive")
    return problems


@dataclass
class Stage:
    name: str
    source: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def copies(self) -> list[str]:
        return [args for name, args in self.steps if name == "COPY"]


def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current = None
    for name, args in instructions():
        if name == "FROM":
            source, _, alias = args.partition(" AS ")
            current = found.setdefault(alias.strip(), Stage(alias.strip(), source.strip()))
        elif current is not None:
            current.steps.append((name, args))
    return found


def test_the_declared_frontend_supports_every_feature_used():
    assert frontend_problems(DOCKERFILE) == []


@pytest.mark.parametrize("snippet, problem", [
    ("RUN --mount=type=secret,id=hf_token,env=HF_TOKEN true", "needs dockerfile:1.10"),
    ("COPY --link a /a", "needs dockerfile:1.4"),
    ("COPY --parents a /a", "needs dockerfile:1.20"),
    ("RUN --future-flag true", "not in the feature table"),
    ("RUN <<EOF\ntrue\nEOF", "needs dockerfile:1.4"),
])
def test_the_frontend_check_catches_a_feature_newer_than_declared(snippet, problem):
    text = f"# syntax=docker/dockerfile:1.3\nFROM debian:bookworm AS base\n{snippet}\n"
    assert any(problem in p for p in frontend_problems(text)), frontend_problems(text)


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
            if source.startswith("${"):  # the checkpoint folder a build names with CHECKPOINTS_DIR
                continue
            assert (ROOT / source).exists(), source
            assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


def test_a_checkpoint_stage_exists_for_every_source_and_each_ends_complete():
    found = stages()
    default = re.search(r"^ARG CHECKPOINTS=(\S+)", DOCKERFILE, re.M).group(1)
    assert default == "huggingface" and found["source"].source == "checkpoints-${CHECKPOINTS}"
    for source in ("huggingface", "context"):
        runs = " ".join(args for name, args in found[f"checkpoints-{source}"].steps if name == "RUN")
        assert "builder.fetch_checkpoints" in runs  # the download, or the completeness check of a local folder
    assert any("builder.convert" in args for name, args in found["converted"].steps if name == "RUN")
    assert any("builder.verify" in args for name, args in found["verified"].steps if name == "RUN")


def test_layers_are_ordered_so_a_code_edit_keeps_dependencies_and_checkpoints():
    found = stages()
    # dependencies: only the files that name them
    assert all(not any(code in args for code in CODE) and "builder" not in args for args in found["deps"].copies())
    deps_runs = [args for name, args in found["deps"].steps if name == "RUN"]
    assert any("pip install -c /tmp/deps/constraints.txt" in args for args in deps_runs)
    # the download: the fetcher alone, on the base (a dependency bump does not download again)
    fetcher = "builder/__init__.py builder/layout.py builder/fetch_checkpoints.py /app/builder/"
    assert found["checkpoints-huggingface"].copies() == [fetcher]
    assert found["checkpoints-context"].copies() == [fetcher, "${CHECKPOINTS_DIR} /build/src"]
    assert found["checkpoints-huggingface"].source == found["checkpoints-context"].source == "base"
    # the conversion: the weights and builder/, never the worker's code
    assert found["converted"].copies() == ["--from=source /build/src /build/src", "builder /app/builder"]
    # the image: the checkpoints before any code; the manifests (verification reruns when inference/ changes) last
    runtime = found["runtime"].copies()
    checkpoints = runtime.index("--from=converted /app/checkpoints /app/checkpoints")
    first_code = min(i for i, args in enumerate(runtime) if any(f"{code} " in args for code in CODE))
    assert checkpoints < first_code and runtime[-1] == "--from=verified /build/manifests/ /app/checkpoints/"
    assert found["runtime"].source == "deps"


def test_the_fetch_stage_pins_huggingface_hub_as_constraints_do():
    pinned = re.search(r"^huggingface_hub==(\S+)", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert re.search(r"^ARG HF_HUB_VERSION=(\S+)", DOCKERFILE, re.M).group(1) == pinned


def test_the_base_is_the_cuda_runtime_without_duplicated_libraries():
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE, re.M).group(1)
    # -base- is cudart and the driver hooks; torch's wheels bring cuBLAS, cuDNN, NCCL themselves
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-base-ubuntu24\.04", base), base
    assert stages()["base"].source == "${BASE_IMAGE}"
    apt = next(args for name, args in stages()["base"].steps if name == "RUN" and "apt-get install" in args)
    assert re.search(r"\bpython3 python3-venv python3-dev\b", apt)  # the distribution's own, final Python
    assert not re.search(r"cuda|cudnn|libnvinfer|python3\.\d+-", apt)


def test_offline_at_run_time_only():
    found = stages()
    runtime_env = " ".join(args for name, args in found["runtime"].steps if name == "ENV")
    assert "HF_HUB_OFFLINE=1" in runtime_env and "TRANSFORMERS_OFFLINE=1" in runtime_env
    for name in ("base", "deps", "checkpoints-huggingface"):
        assert "OFFLINE" not in " ".join(args for inst, args in found[name].steps if inst == "ENV")


def test_entrypoint_exists_and_runs_both_modes_only():
    [entrypoint] = [json.loads(args) for name, args in instructions() if name == "ENTRYPOINT"]
    script = ROOT / entrypoint[0].removeprefix("/app/")
    assert script.is_file() and script.stat().st_mode & 0o111
    text = script.read_text()
    assert "exec python -u /app/handler.py" in text and "exec python -m api_shim" in text
    done = subprocess.run(["sh", str(script)], env={"MODE": "desktop", "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "MODE must be 'serverless' or 'pod'" in done.stderr


def test_the_compile_cache_bake_command_runs_through_the_entrypoint():
    # compile-cache/README.md's command, after the image name, is what the entrypoint must run
    readme = (ROOT / "compile-cache/README.md").read_text()
    command = re.search(r"acestep-worker \\?\s*\n?\s*(python -m builder\.bake_compile_cache[^\n]*)", readme).group(1)
    args = command.split()
    assert args[:3] == ["python", "-m", "builder.bake_compile_cache"]
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MODE": "serverless"}
    done = subprocess.run(["sh", str(ROOT / "docker/entrypoint.sh"), *args, "--help"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Compile the DiT and the VAE decoder" in done.stdout  # the bake script, not the handler


def test_no_secret_in_env_or_arg_defaults():
    for name, args in instructions():
        if name == "ARG":
            key, _, default = args.partition("=")
            assert not (SECRET_NAME.search(key) and default), args
        if name == "ENV":
            for key, value in re.findall(r"(\w+)=(\S*)", args):
                assert not (SECRET_NAME.search(key) and value), key
    # the token only as a build secret, read from its file (docker's BuildKit and podman/buildah both mount it)
    fetch = next(args for name, args in stages()["checkpoints-huggingface"].steps
                 if name == "RUN" and "fetch_checkpoints" in args)
    assert fetch.startswith("--mount=type=secret,id=hf_token ") and "--token-file /run/secrets/hf_token" in fetch


def test_constraints_pin_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"==", line)[0].lower().replace("_", "-"): line
            for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", requirement)[0].lower().replace("_", "-")
        if name == "torch":
            continue  # pinned by TORCH_VERSION in the Dockerfile, with its CUDA build
        assert name in pins, f"{name} is not pinned in constraints.txt"


def test_the_dependency_layer_installs_exactly_the_project_dependencies():
    done = subprocess.run([sys.executable, str(ROOT / "docker/requirements.py"), str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, check=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert done.stdout.split("\n")[:-1] == project["dependencies"]


def test_runpod_hub_json_follows_the_published_format():
    hub = hub_format.Hub.model_validate(json.loads((ROOT / ".runpod/hub.json").read_text()))
    assert hub.config.runsOn == "GPU" and hub.category == "audio"
    for entry in hub.config.env:  # a secret is the user's to type in, never a default
        assert not SECRET_NAME.search(entry.key) or (entry.input and entry.input.default == "")


def test_runpod_tests_json_follows_the_published_format():
    tests = hub_format.Tests.model_validate(json.loads((ROOT / ".runpod/tests.json").read_text()))
    for test in tests.tests:
        if test.input.get("action", "generate") == "generate":
            parse_generate_request(test.input)  # every Hub test is a valid request


@pytest.mark.parametrize("model, data, message", [
    ("Hub", {"title": "t", "description": "d", "type": "serverless", "category": "music",
             "config": {"runsOn": "GPU", "containerDiskInGb": 10, "gpuCount": 1, "gpuIds": "ADA_24"}}, "category"),
    ("Hub", {"title": "t", "description": "d", "type": "serverless", "category": "audio",
             "config": {"runsOn": "GPU", "containerDiskInGb": 10, "gpuCount": 1, "gpuIds": "H100"}}, "gpuIds"),
    ("Hub", {"title": "t", "description": "d", "type": "serverless", "category": "audio",
             "config": {"runsOn": "GPU", "containerDiskInGb": 10, "gpuCount": 1, "gpuIds": "ADA_24",
                        "env": [{"key": "N", "input": {"name": "n", "type": "number", "description": "d",
                                                       "default": "4"}}]}}, "not a number"),
    ("Tests", {"tests": [{"name": "x", "input": {}, "timeout": 10}], "config": {"gpuTypeId": "RTX 4090",
                                                                              "gpuCount": 1}}, "gpuTypeId"),
    ("Tests", {"tests": [{"name": "x", "input": {}, "timeOut": 10}],
               "config": {"gpuTypeId": "NVIDIA GeForce RTX 4090", "gpuCount": 1}}, "timeOut"),
])
def test_the_hub_format_refuses_what_runpod_would(model, data, message):
    with pytest.raises(ValueError, match=message):
        getattr(hub_format, model).model_validate(data)
