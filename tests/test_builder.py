"""builder/: conversion from the original layout (round trip, refusals), fetching from a local folder
(resume, missing file), verification with its manifest, and the checks the loader makes with it."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from builder import fetch_checkpoints, verify
from builder.convert import ConversionError, convert
from inference.errors import CheckpointError
from inference.load import load_pipeline
from inference.manifest import MANIFEST
from inference.settings import Settings
from tests.original_layout import CONFIG, original_shapes, write_original_checkpoint

DIT = "acestep-v15-turbo"
# docs/checkpoints.md section 2, restated for the test: original key -> (subfolder, diffusers key)
PREFIXES = {"decoder.": "transformer", "encoder.": "condition_encoder", "tokenizer.": "audio_tokenizer",
            "detokenizer.": "audio_token_detokenizer"}
RENAMED = [(".q_proj.", ".to_q."), (".k_proj.", ".to_k."), (".v_proj.", ".to_v."), (".o_proj.", ".to_out.0."),
           (".q_norm.", ".norm_q."), (".k_norm.", ".norm_k.")]


def expected_place(key: str) -> tuple[str, str]:
    if key == "null_condition_emb":
        return "condition_encoder", key
    prefix = next(p for p in PREFIXES if key.startswith(p))
    rest = key[len(prefix):].replace("proj_in.1.", "proj_in_conv.").replace("proj_out.1.", "proj_out_conv.")
    for old, new in RENAMED:
        rest = rest.replace(old, new)
    return PREFIXES[prefix], rest


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("original")
    return root, write_original_checkpoint(root)


def test_conversion_round_trip_keeps_every_tensor(original, tmp_path):
    source, tensors = original
    target = convert(source, DIT, tmp_path, dtype=torch.float32)
    assert len(tensors) == 171  # decoder 58 + encoder 52 + null 1 + tokenizer 32 + detokenizer 28 at 2 layers
    saved = {name: load_file(target / name / "diffusion_pytorch_model.safetensors") for name in PREFIXES.values()}
    for key, tensor in tensors.items():
        folder, new_key = expected_place(key)
        assert torch.equal(saved[folder][new_key], tensor.float()), key
    silence = torch.load(source / DIT / "silence_latent.pt", weights_only=True)
    assert torch.equal(saved["condition_encoder"]["silence_latent"], silence.transpose(1, 2))
    assert sum(len(v) for v in saved.values()) == len(tensors) + 1  # + the silence latent, nothing else
    transformer = json.loads((target / "transformer/config.json").read_text())
    assert transformer["is_turbo"] is True and transformer["model_version"] == "turbo"
    scheduler = json.loads((target / "scheduler/scheduler_config.json").read_text())
    assert scheduler["num_train_timesteps"] == 1 and scheduler["shift"] == 1.0
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "AceStepPipeline" and index["text_encoder"] == ["transformers", "Qwen3Model"]
    # the VAE is copied byte for byte (it stays fp32)
    assert (target / "vae/diffusion_pytorch_model.safetensors").read_bytes() == \
        (source / "vae/diffusion_pytorch_model.safetensors").read_bytes()


def test_converted_checkpoint_loads_strictly_and_generates(original, tmp_path):
    source, _ = original
    target = convert(source, DIT, tmp_path)  # bf16, the image's default
    loaded = load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))
    assert loaded.is_turbo and loaded.supports_audio_codes and not loaded.random_weights
    with torch.inference_mode():
        audio = loaded.pipe(prompt=["x"], lyrics=["[Instrumental]"], audio_duration=2.0, num_inference_steps=2,
                            generator=torch.Generator().manual_seed(0), output_type="np").audios
    assert np.asarray(audio).shape[:2] == (1, 2) and np.isfinite(np.asarray(audio)).all()


@pytest.mark.parametrize("change, message", [
    (dict(silence=False), "silence_latent.pt is missing"),
    (dict(extra={"stray.weight": torch.zeros(3)}), "belong to no component"),
    (dict(drop=("decoder.layers.1.mlp.up_proj.weight",)), "transformer: 1 missing (layers.1.mlp.up_proj.weight)"),
    (dict(extra={"encoder.lyric_encoder.extra.weight": torch.zeros(3)}), "condition_encoder: 1 left over"),
    (dict(extra={"decoder.norm_out.weight": torch.zeros(5)}), "wrong shape"),
    (dict(config={**CONFIG, "in_channels": 20}), "in_channels (20) must be 3 x audio_acoustic_hidden_dim"),
])
def test_conversion_refuses_broken_sources(change, message, tmp_path):
    write_original_checkpoint(tmp_path / "src", **change)
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert(tmp_path / "src", DIT, tmp_path / "out")
    assert not (tmp_path / "out" / DIT).exists() and not list((tmp_path / "out").glob(".*converting*"))


def test_all_zero_silence_latent_is_refused(tmp_path):
    write_original_checkpoint(tmp_path / "src")
    torch.save(torch.zeros(1, 8, 15000), tmp_path / "src" / DIT / "silence_latent.pt")
    with pytest.raises(ConversionError, match="all zeros"):
        convert(tmp_path / "src", DIT, tmp_path / "out")


def test_base_models_are_written_as_base_explicitly(tmp_path):
    # the original config carries the "turbo" default; the folder name says base, and base must get CFG
    write_original_checkpoint(tmp_path / "src", dit="acestep-v15-base")
    target = convert(tmp_path / "src", "acestep-v15-base", tmp_path / "out")
    transformer = json.loads((target / "transformer/config.json").read_text())
    assert transformer["is_turbo"] is False and transformer["model_version"] == "base"
    loaded = load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))
    assert not loaded.is_turbo and loaded.limits.max_steps == 200


def test_a_diffusers_layout_folder_is_used_as_it_is(checkpoint_dir, tmp_path):
    target = convert(checkpoint_dir, DIT, tmp_path)
    for path in (checkpoint_dir / DIT).rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(checkpoint_dir / DIT)).read_bytes() == path.read_bytes()


def test_fetch_from_a_local_folder_resumes_and_names_missing_files(original, tmp_path, capsys):
    source, _ = original
    dest = tmp_path / "dest"
    args = ["--source", str(source), "--dest", str(dest), "--dit", DIT, "--lm", "none"]
    assert fetch_checkpoints.main(args) == 0
    weights = dest / DIT / "model.safetensors"
    assert weights.read_bytes() == (source / DIT / "model.safetensors").read_bytes()
    # an interrupted copy: the file is gone, a third of it sits in .part
    data = weights.read_bytes()
    weights.unlink()
    (dest / DIT / "model.safetensors.part").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert fetch_checkpoints.main(args) == 0
    assert f"{DIT}: 0 copied, 1 resumed" in capsys.readouterr().out
    assert weights.read_bytes() == data and not (dest / DIT / "model.safetensors.part").exists()
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert fetch_checkpoints.main(["--source", str(broken), "--dest", str(tmp_path / "d2"), "--lm", "none"]) == 1
    assert "vae/ is missing diffusion_pytorch_model.safetensors" in capsys.readouterr().err


def test_verify_writes_a_manifest_the_loader_checks(original, tmp_path, capsys):
    source, _ = original
    target = convert(source, DIT, tmp_path)
    assert verify.main([str(target), "--dtype", "bfloat16"]) == 0
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["check"]["output_shape"] == [1, 2, 240000] and manifest["versions"]["diffusers"]
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert manifest["files"][weights]["bytes"] == (target / weights).stat().st_size
    assert len(manifest["files"][weights]["sha256"]) == 64
    load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))  # matches: loads
    with open(target / weights, "ab") as handle:  # a file changed after the build
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="has .* bytes, but the build verified"):
        load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))
    (target / weights).unlink()
    with pytest.raises(CheckpointError, match="is missing, though the build verified it"):
        load_pipeline(Settings(ACESTEP_CONFIG_PATH=target, ACESTEP_WARMUP=False))


def test_original_layout_is_refused_by_the_loader_with_the_way_out(original):
    source, _ = original
    with pytest.raises(CheckpointError, match="original ACE-Step layout.*builder.convert"):
        load_pipeline(Settings(ACESTEP_CONFIG_PATH=source / DIT, ACESTEP_WARMUP=False))


def test_fixture_follows_the_documented_counts():
    shapes = original_shapes()
    assert sum(k.startswith("decoder.") for k in shapes) == 58
    assert sum(k.startswith("decoder.layers.0.") for k in shapes) == 19


def test_check_in_place_accepts_both_layouts_and_names_a_missing_file(original, checkpoint_dir, tmp_path, capsys):
    # the image build's check of a checkpoint folder from the build context: original layout or diffusers
    source, _ = original
    assert fetch_checkpoints.main(["--dest", str(source), "--dit", DIT, "--lm", "none", "--check"]) == 0
    assert f"{DIT}: complete (dit)" in capsys.readouterr().out
    assert fetch_checkpoints.main(["--dest", str(checkpoint_dir), "--dit", DIT, "--lm", "none", "--check"]) == 0
    assert f"{DIT}: complete (dit-diffusers)" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / DIT / "silence_latent.pt").unlink()
    assert fetch_checkpoints.main(["--dest", str(broken), "--dit", DIT, "--lm", "none", "--check"]) == 1
    assert f"{DIT}/ is missing silence_latent.pt" in capsys.readouterr().err


def test_the_token_comes_from_the_environment_or_the_build_secret_file(tmp_path, monkeypatch):
    secret = tmp_path / "hf_token"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert fetch_checkpoints.read_token(secret) is None  # no secret given: anonymous
    secret.write_text("hf_file_token\n")
    assert fetch_checkpoints.read_token(secret) == "hf_file_token"
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")
    assert fetch_checkpoints.read_token(secret) == "hf_env_token"


def test_verify_copies_the_manifests_for_the_image(original, tmp_path):
    source, _ = original
    target = convert(source, DIT, tmp_path / "ckpt")
    assert verify.main([str(target), "--dtype", "bfloat16", "--manifests", str(tmp_path / "manifests")]) == 0
    copied = tmp_path / "manifests" / DIT / MANIFEST
    assert copied.read_bytes() == (target / MANIFEST).read_bytes()
    assert [p.relative_to(tmp_path / "manifests") for p in (tmp_path / "manifests").rglob("*") if p.is_file()] \
        == [copied.relative_to(tmp_path / "manifests")]  # manifests only, never weights
