"""Cold start: what loads, what is refused, and what the messages say."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.demo_checkpoint import make_demo_checkpoint
from inference.errors import CheckpointError
from inference.load import check_checkpoint_folder, load_pipeline
from inference.settings import Settings


def settings_for(root, **extra):
    return Settings(ACESTEP_CHECKPOINT_DIR=root, ACESTEP_WARMUP=False, **extra)


def test_loaded_pipeline_reports_what_it_loaded(loaded):
    report = loaded.report
    assert report.dit_model == "acestep-v15-turbo" and report.device == "cpu" and report.dtype == "float32"
    assert report.random_weights and "RANDOM WEIGHTS" in report.summary()
    assert loaded.is_turbo and loaded.supports_audio_codes and loaded.sample_rate == 48_000
    assert loaded.limits.max_steps == 20 and loaded.task_types == ["text2music", "repaint", "cover"]
    assert {"transformer", "condition_encoder", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(
        report.components)


def test_warm_up_is_timed(checkpoint_dir):
    loaded = load_pipeline(Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_dir, ACESTEP_WARMUP=True))
    assert loaded.report.warmup_s > 0


def test_config_path_wins_over_dir_and_name(checkpoint_dir, tmp_path):
    settings = Settings(ACESTEP_CHECKPOINT_DIR=tmp_path, ACESTEP_DIT_MODEL="nothing-here",
                        ACESTEP_CONFIG_PATH=checkpoint_dir / "acestep-v15-turbo")
    assert settings.dit_path == checkpoint_dir / "acestep-v15-turbo" and settings.dit_name == "acestep-v15-turbo"


def test_missing_checkpoint_says_what_was_looked_for_and_how_to_get_it(tmp_path):
    with pytest.raises(CheckpointError) as caught:
        load_pipeline(settings_for(tmp_path))
    message = str(caught.value)
    assert str(tmp_path / "acestep-v15-turbo") in message and "builder/" in message and "make demo" in message


def test_original_layout_is_told_to_convert(tmp_path):
    folder = tmp_path / "acestep-v15-turbo"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="original ACE-Step layout.*builder.convert"):
        check_checkpoint_folder(folder)


@pytest.fixture
def broken_copy(checkpoint_dir, tmp_path):
    target = tmp_path / "acestep-v15-turbo"
    shutil.copytree(checkpoint_dir / "acestep-v15-turbo", target)
    return target


def test_missing_component_folder_is_named(broken_copy):
    shutil.rmtree(broken_copy / "vae")
    with pytest.raises(CheckpointError, match="lacks the component folder.*vae"):
        load_pipeline(settings_for(broken_copy.parent))


def test_a_missing_weight_is_refused_not_silently_randomised(broken_copy):
    weights = broken_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors.pop(next(k for k in tensors if k.endswith("norm_out.weight")))
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_pipeline(settings_for(broken_copy.parent))


def test_an_all_zero_silence_latent_is_refused(broken_copy):
    weights = broken_copy / "condition_encoder" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["silence_latent"] = torch.zeros_like(tensors["silence_latent"])
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match="all-zero condition_encoder.silence_latent"):
        load_pipeline(settings_for(broken_copy.parent))


def test_corrupt_weights_give_one_clear_message(broken_copy):
    (broken_copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="could not load the checkpoint"):
        load_pipeline(settings_for(broken_copy.parent))


def test_demo_checkpoint_is_deterministic(tmp_path):
    a = make_demo_checkpoint(tmp_path / "a")
    b = make_demo_checkpoint(tmp_path / "b")
    for part in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (a / part).read_bytes() == (b / part).read_bytes()
    index = json.loads((a / "model_index.json").read_text())
    assert index["_class_name"] == "AceStepPipeline" and index["audio_tokenizer"][1] == "AceStepAudioTokenizer"
    transformer = json.loads((a / "transformer" / "config.json").read_text())
    assert transformer["is_turbo"] is True and transformer["model_version"] == "turbo"
