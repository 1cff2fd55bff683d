"""Checkpoints from the host's Hugging Face cache (RunPod's cached models) when none are baked into the image:
found, converted once, served through the handler; a half-downloaded snapshot refused with the file's name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.errors import CheckpointError
from inference.lm.demo import make_demo_lm
from inference.model_cache import cache_roots, snapshot, with_cached_models
from inference.settings import Settings
from tests.conftest import ROOT, worker_env
from tests.hub_cache import SNAPSHOT, cache_as_hub
from tests.original_layout import write_original_checkpoint

LM = "acestep-5Hz-lm-1.7B"  # the LM the main repo carries
JOB = {"input": {"prompt": "cached", "lyrics": "[inst]", "audio_duration": 10, "batch_size": 1,
                 "inference_steps": 2, "audio_format": "wav", "seed": 1}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """``ACE-Step/Ace-Step1.5`` in the original layout (DiT, VAE, text encoder, LM) as the hub caches it."""
    source = tmp_path_factory.mktemp("repo")
    write_original_checkpoint(source)
    make_demo_lm(source / LM)
    cache = tmp_path_factory.mktemp("huggingface-cache") / "hub"
    cache_as_hub(source, cache, "ACE-Step/Ace-Step1.5")
    return cache


def served(cache: Path, converted: Path | None, tmp_path: Path, **env: str) -> tuple[dict, str]:
    """One job through ``handler.py`` (RunPod's local test mode: cold start, the job, exit) with an empty
    checkpoint folder, as in the slim image."""
    empty = tmp_path / "checkpoints"
    empty.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(JOB)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=worker_env(empty, **{"ACESTEP_HF_CACHE": str(cache), "ACESTEP_LM_MODEL": LM,
                                                   "ACESTEP_WARMUP": "0", "ACESTEP_OUTPUT_DIR": str(tmp_path / "out"),
                                                   **({"ACESTEP_CONVERTED_DIR": str(converted)} if converted else {}),
                                                   **env}))
    log = done.stdout + done.stderr
    output = next((ast.literal_eval(line.split("Job result: ", 1)[1]) for line in log.splitlines()
                   if "Job result: " in line), None)
    failed = next((line.split("failed with error: ", 1)[1] for line in log.splitlines()
                   if "failed with error: " in line), None)  # how RunPod's test mode reports a job's error
    assert output is not None or failed is not None, log[-3000:]
    return (output.get("output", output) if output else {"error": failed}), log


def test_an_original_layout_snapshot_is_converted_once_and_served(hub, tmp_path):
    converted = tmp_path / "converted"
    first, log = served(hub, converted, tmp_path)
    assert first["dit_model"] == "acestep-v15-turbo" and first["lm_model"] == LM, first
    assert len(first["audios"]) == 1 and first["audios"][0]["duration"] == 10.0
    assert "converting the cached acestep-v15-turbo" in log
    [done] = list(converted.glob("*/acestep-v15-turbo/model_index.json"))
    again, log = served(hub, converted, tmp_path)
    assert "was converted before" in log and "converting the cached" not in log
    assert Path(again["audios"][0]["path"]).read_bytes() == Path(first["audios"][0]["path"]).read_bytes()
    assert done.is_file()


def test_without_a_folder_to_keep_a_conversion_it_is_converted_in_memory(hub, tmp_path):
    """No ACESTEP_CONVERTED_DIR and no network volume: nothing kept for a later start to find, so nothing is
    written; the same song as from a converted folder."""
    from_memory, log = served(hub, None, tmp_path)
    assert "converting the cached acestep-v15-turbo in memory" in log
    assert from_memory["dit_model"] == "acestep-v15-turbo" and from_memory["lm_model"] == LM
    kept, _ = served(hub, tmp_path / "converted", tmp_path)
    assert Path(from_memory["audios"][0]["path"]).read_bytes() == Path(kept["audios"][0]["path"]).read_bytes()


def test_a_half_downloaded_snapshot_is_refused_naming_the_missing_file(hub, tmp_path_factory, tmp_path):
    cache = tmp_path_factory.mktemp("partial") / "hub"
    source = tmp_path / "repo"
    write_original_checkpoint(source)
    snap = cache_as_hub(source, cache, "ACE-Step/Ace-Step1.5")
    (snap / "acestep-v15-turbo" / "model.safetensors").resolve().unlink()  # its blob never arrived
    output, log = served(cache, tmp_path / "converted", tmp_path)
    assert "cannot start" not in log  # the worker stays up and answers the job with the reason
    assert output["error"] == ("this worker could not load its model: the cached snapshot of ACE-Step/Ace-Step1.5 is incomplete or not ACE-Step's: "
                               "acestep-v15-turbo/ is missing model.safetensors (from ACE-Step/Ace-Step1.5/"
                               "acestep-v15-turbo) (a download still running, or a different repo?)")


def test_a_diffusers_layout_repo_is_loaded_as_it_is(checkpoint_dir, tmp_path):
    cache = tmp_path / "hub"
    cache_as_hub(checkpoint_dir / "acestep-v15-turbo", cache, "ACE-Step/acestep-v15-turbo-diffusers")
    output, log = served(cache, tmp_path / "converted", tmp_path, ACESTEP_DIT_MODEL="acestep-v15-turbo-diffusers",
                         ACESTEP_LM_MODEL="none")
    assert output["dit_model"] == "acestep-v15-turbo-diffusers" and len(output["audios"]) == 1, output
    assert "converting" not in log


def test_where_the_cache_is_looked_for(tmp_path, hub):
    home = tmp_path / "home"
    (home / "hub").mkdir(parents=True)
    settings = Settings(ACESTEP_HF_CACHE=hub, HF_HOME=home, HF_HUB_CACHE=hub)
    assert cache_roots(settings) == [hub, home / "hub"]  # RunPod's (or ACESTEP_HF_CACHE) first, no repeats
    assert snapshot([home / "hub", hub], "ACE-Step/Ace-Step1.5") == hub / "models--ACE-Step--Ace-Step1.5" / \
        "snapshots" / SNAPSHOT  # refs/main names it
    baked = Settings(ACESTEP_CHECKPOINT_DIR=tmp_path, ACESTEP_HF_CACHE=hub)
    (tmp_path / "acestep-v15-turbo").mkdir()
    kept = with_cached_models(baked, None)
    assert kept.settings is baked and kept.build is None  # a baked checkpoint wins: the cache is not looked at
    missing = Settings(ACESTEP_CHECKPOINT_DIR=tmp_path / "none", ACESTEP_HF_CACHE=hub, ACESTEP_DIT_MODEL="acestep-v15-sft")
    with pytest.raises(CheckpointError, match="set the endpoint's cached model to ACE-Step/acestep-v15-sft"):
        with_cached_models(missing, None)


def test_an_lm_in_a_repo_of_its_own_is_found_under_its_name(hub, tmp_path):
    make_demo_lm(tmp_path / "lm")
    cache_as_hub(tmp_path / "lm", hub, "ACE-Step/acestep-5Hz-lm-0.6B")
    settings = Settings(ACESTEP_CHECKPOINT_DIR=tmp_path / "none", ACESTEP_HF_CACHE=hub,
                        ACESTEP_LM_MODEL="acestep-5Hz-lm-0.6B", ACESTEP_CONVERTED_DIR="none")
    cached = with_cached_models(settings, "acestep-5Hz-lm-0.6B")
    assert cached.build is not None  # no folder to keep a conversion: in memory
    assert cached.settings.lm_model_path.name == "acestep-5Hz-lm-0.6B"  # not the snapshot's hash
    assert (cached.settings.lm_model_path / "config.json").is_file()
