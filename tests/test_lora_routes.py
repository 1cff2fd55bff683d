"""Upstream's /v1/lora/* routes on the pod-mode shim (a real server on a socket): the server's default
adapters for tasks that name none, upstream's request and answer shapes, and /v1/models listing the folder."""

from __future__ import annotations

import json

import pytest
import requests

from inference.demo_checkpoint import build_pipeline
from tests.conftest import decode, start_shim, stop, wait_for_task
from tests.lora_files import diffusers_file, peft_lora, upstream_folder

SONG = {"caption": "warm synth pad", "lyrics": "[inst]", "duration": 10, "batch_size": 1, "inference_steps": 2,
        "audio_format": "wav", "seed": 3, "use_random_seed": False}


@pytest.fixture(scope="module")
def shim(checkpoint_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    transformer = build_pipeline().transformer  # the tiny DiT's shapes (the checkpoint's own are the same)
    diffusers_file(peft_lora(transformer, seed=1), folder / "style.safetensors")
    upstream_folder(peft_lora(transformer, seed=2), folder / "trained", alpha=4)
    process, url = start_shim(checkpoint_dir, tmp_path_factory.mktemp("shim-lora"), ACESTEP_LORA_DIR=str(folder))
    yield url, folder
    stop(process)


def song(url: str, **fields) -> bytes:
    task = requests.post(f"{url}/release_task", json={**SONG, **fields}, timeout=30).json()["data"]["task_id"]
    item = wait_for_task(url, task)
    assert item["status"] == 1, item
    [result] = json.loads(item["result"])
    return decode(requests.get(url + result["file"], timeout=30).content)[0].tobytes()


def test_models_list_the_adapters_of_the_folder(shim):
    url, _ = shim
    listed = requests.get(f"{url}/v1/models", timeout=10).json()["data"]["lora_adapters"]
    assert [(a["name"], a["layout"]) for a in listed] == [("style", "file"), ("trained", "ace-step")]


def test_a_loaded_adapter_is_the_default_of_tasks_that_name_none(shim):
    url, folder = shim
    plain = song(url)
    styled = song(url, lora="style")
    assert styled != plain

    loaded = requests.post(f"{url}/v1/lora/load", json={"lora_path": str(folder / "style.safetensors")}, timeout=30)
    assert loaded.status_code == 200
    assert loaded.json()["data"] == {"message": f"LoRA 'style' loaded from {folder / 'style.safetensors'}",
                                     "lora_path": str(folder / "style.safetensors")}
    status = requests.get(f"{url}/v1/lora/status", timeout=10).json()["data"]
    assert status["lora_loaded"] and status["use_lora"] and status["adapters"] == ["style"]
    assert status["active_adapter"] == "style" and status["scales"] == {"style": 1.0}
    assert song(url) == styled  # a task naming no adapter renders with the server's
    assert song(url, lora=[]) == plain  # its own choice wins, even none
    assert song(url, param_obj={"lora": []}) == plain  # wherever a client puts it

    toggled = requests.post(f"{url}/v1/lora/toggle", json={"use_lora": False}, timeout=10).json()
    assert toggled["data"] == {"message": "LoRA disabled", "use_lora": False}
    assert song(url) == plain
    requests.post(f"{url}/v1/lora/toggle", json={"use_lora": True}, timeout=10)

    scaled = requests.post(f"{url}/v1/lora/scale", json={"scale": 0.5}, timeout=10).json()["data"]
    assert scaled == {"message": "LoRA scale (all): 0.50", "scale": 0.5}
    assert song(url) == song(url, lora={"name": "style", "scale": 0.5})

    added = requests.post(f"{url}/v1/lora/load", json={"lora_path": "trained", "adapter_name": "second"},
                          timeout=30).json()["data"]
    assert added["adapter_name"] == "second"
    assert requests.get(f"{url}/v1/lora/status", timeout=10).json()["data"]["adapters"] == ["style", "second"]
    assert song(url) == song(url, lora=[{"name": "style", "scale": 0.5}, "trained"])

    assert requests.post(f"{url}/v1/lora/unload", timeout=10).json()["data"] == {
        "message": "LoRA unloaded, using base model"}
    assert song(url) == plain


def test_the_routes_refuse_as_upstream_does_with_one_line_messages(shim):
    url, _ = shim
    missing = requests.post(f"{url}/v1/lora/load", json={"lora_path": "nothing-here"}, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error"] == "lora_path: no adapter 'nothing-here' in ACESTEP_LORA_DIR"
    outside = requests.post(f"{url}/v1/lora/load", json={"lora_path": "/etc/passwd"}, timeout=10)
    assert outside.status_code == 400 and "/etc" not in outside.json()["error"]
    assert requests.post(f"{url}/v1/lora/load", json={}, timeout=10).json()["error"].startswith("lora_path")
    toggled = requests.post(f"{url}/v1/lora/toggle", json={"use_lora": True}, timeout=10)  # nothing loaded
    assert toggled.status_code == 200 and toggled.json()["code"] == 400
    assert toggled.json()["error"] == "No LoRA adapter loaded. Please load a LoRA first."
    bad_scale = requests.post(f"{url}/v1/lora/scale", json={"scale": 3}, timeout=10)
    assert bad_scale.status_code == 400 and bad_scale.json()["error"] == "scale must be between 0 and 2 (got 3)"
    dotted = requests.post(f"{url}/v1/lora/load", json={"lora_path": "a..b"}, timeout=10)
    assert dotted.status_code == 400 and dotted.json()["error"].startswith("lora_path must be an adapter")
    requests.post(f"{url}/v1/lora/load", json={"lora_path": "style", "adapter_name": "one"}, timeout=30)
    twice = requests.post(f"{url}/v1/lora/load", json={"lora_path": "style", "adapter_name": "two"}, timeout=30)
    assert twice.status_code == 400 and twice.json()["error"] == ("lora_path: 'style' is loaded already, under "
                                                                 "another adapter_name")
    requests.post(f"{url}/v1/lora/unload", timeout=10)
    refused = requests.post(f"{url}/release_task", json={**SONG, "lora": {"name": "style", "scale": -1}}, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "lora[0].scale must be between 0 and 2 (got -1)"
