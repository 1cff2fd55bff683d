"""The original ACE-Step 1.5 layout to the diffusers layout that ``AceStepPipeline.from_pretrained`` loads.

    python -m builder.convert --source SRC --dit acestep-v15-turbo --out /app/checkpoints [--lm acestep-5Hz-lm-1.7B]
                              [--dtype bfloat16] [--model-version turbo|base|sft] [--force]

Input (docs/checkpoints.md section 1): ``SRC/<dit>/`` (``config.json``, ``model.safetensors`` or shards with an index,
``silence_latent.pt``), ``SRC/vae/``, ``SRC/Qwen3-Embedding-0.6B/``. Output: ``OUT/<dit>/`` with
``transformer/``, ``condition_encoder/``, ``audio_tokenizer/``, ``audio_token_detokenizer/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``model_index.json`` (section 3). A folder that is already
in the diffusers layout is copied as it is. The LM folder, when named, is copied unchanged.

What it refuses (section 5): a key that belongs to no component, a missing or left-over key in any module,
a shape that does not match, a missing, misshapen, all-zero or non-finite silence latent, configs that break
the shape invariants. After saving it loads every module back with diffusers and requires the loading info
to be clean and every tensor to be unchanged. ``is_turbo``/``model_version`` are written explicitly (from
``--model-version``, else the folder name, else the config); the VAE is copied verbatim, so it stays fp32.
Nothing is written to ``OUT/<dit>`` unless all of that holds (it is built in a staging folder first); a source
already in the diffusers layout is copied as it is (``builder.verify`` checks it next).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from builder.fetch_checkpoints import copy_resumable
from builder.layout import OPTIONAL_TOKENIZER_FILES, TEXT_ENCODER_DIR, TOKENIZER_FILES, VAE_DIR
from builder.original_names import RENAMES, transformer_name

SILENCE_FRAMES = 15000
MODULES = ("transformer", "condition_encoder", "audio_tokenizer", "audio_token_detokenizer")
ROUTES = (("decoder.", "transformer"), ("encoder.", "condition_encoder"), ("tokenizer.", "audio_tokenizer"),
          ("detokenizer.", "audio_token_detokenizer"))
# non-persistent buffers that a strict load would trip over, should a file ever carry them
STRAY = re.compile(r"(\.rotary_emb\.inv_freq$|quantizer\.layers\.|quantizer\.scales$)")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ConversionError(Exception):
    """The source cannot become a correct diffusers checkpoint; the message says what is wrong."""


# --- reading the source ---------------------------------------------------------------------------
def read_state(dit_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = dit_dir / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(dit_dir / shard))
        return state
    single = dit_dir / "model.safetensors"
    if not single.is_file():
        raise ConversionError(f"{dit_dir.name}/ has neither model.safetensors nor model.safetensors.index.json")
    return load_file(single)


def read_silence_latent(dit_dir: Path, channels: int) -> torch.Tensor:
    path = dit_dir / "silence_latent.pt"
    if not path.is_file():
        raise ConversionError(f"{dit_dir.name}/silence_latent.pt is missing: without it the model renders a drone "
                              f"instead of silence; fetch it with the checkpoint")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, torch.Tensor) or tuple(raw.shape) != (1, channels, SILENCE_FRAMES):
        shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise ConversionError(f"silence_latent.pt must be a [1, {channels}, {SILENCE_FRAMES}] tensor (got {shape})")
    if not torch.isfinite(raw).all() or not raw.abs().sum() > 0:
        raise ConversionError("silence_latent.pt is all zeros or not finite: it must be the VAE-encoded silence")
    return raw.transpose(1, 2).contiguous()


def route(state: dict[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Source keys to (module, diffusers key); returns the groups and the stray buffers dropped."""
    groups: dict[str, dict[str, torch.Tensor]] = {name: {} for name in MODULES}
    dropped, unrouted = [], []
    for key, tensor in state.items():
        if STRAY.search(key):
            dropped.append(key)
            continue
        if key == "null_condition_emb":
            groups["condition_encoder"][key] = tensor
            continue
        for prefix, module in ROUTES:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                if module == "transformer":
                    rest = transformer_name(rest)
                else:
                    for old, new in RENAMES:
                        rest = rest.replace(old, new)
                groups[module][rest] = tensor
                break
        else:
            unrouted.append(key)
    if unrouted:
        raise ConversionError(f"{len(unrouted)} key(s) belong to no component (expected decoder., encoder., "
                              f"tokenizer., detokenizer., null_condition_emb): {', '.join(sorted(unrouted)[:5])}")
    return groups, dropped


# --- configs --------------------------------------------------------------------------------------
def model_version(dit_name: str, cfg: dict[str, Any], override: str | None) -> str:
    if override:
        return override
    for version in ("turbo", "sft", "base"):
        if version in dit_name.lower():
            return version
    if cfg.get("is_turbo") is not None:
        return "turbo" if cfg["is_turbo"] else str(cfg.get("model_version") or "base")
    raise ConversionError(f"cannot tell whether {dit_name} is turbo, base or sft: pass --model-version")


def module_kwargs(cfg: dict[str, Any], version: str) -> dict[str, dict[str, Any]]:
    try:
        eh = cfg.get("encoder_hidden_size", cfg["hidden_size"])
        ei = cfg.get("encoder_intermediate_size", cfg["intermediate_size"])
        en = cfg.get("encoder_num_attention_heads", cfg["num_attention_heads"])
        ekv = cfg.get("encoder_num_key_value_heads", cfg["num_key_value_heads"])
        shared = {k: cfg[k] for k in ("head_dim", "rope_theta", "attention_bias", "attention_dropout", "rms_norm_eps",
                                      "sliding_window")}
        transformer = {k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_key_value_heads", "in_channels",
                                           "audio_acoustic_hidden_dim", "patch_size", "layer_types")}
        transformer.update(shared, encoder_hidden_size=eh, is_turbo=version == "turbo", model_version=version)
        condition = dict(hidden_size=eh, intermediate_size=ei, num_attention_heads=en, num_key_value_heads=ekv,
                         text_hidden_dim=cfg["text_hidden_dim"], timbre_hidden_dim=cfg["timbre_hidden_dim"],
                         num_lyric_encoder_hidden_layers=cfg["num_lyric_encoder_hidden_layers"],
                         num_timbre_encoder_hidden_layers=cfg["num_timbre_encoder_hidden_layers"], **shared)
        pooler_layers = cfg.get("num_attention_pooler_hidden_layers", 2)
        pooler = dict(hidden_size=eh, intermediate_size=ei, num_attention_heads=en, num_key_value_heads=ekv,
                      audio_acoustic_hidden_dim=cfg["audio_acoustic_hidden_dim"],
                      pool_window_size=cfg.get("pool_window_size", 5), num_attention_pooler_hidden_layers=pooler_layers,
                      layer_types=list(cfg["layer_types"][:pooler_layers]), **shared)
    except KeyError as err:
        raise ConversionError(f"config.json lacks {err.args[0]!r}, which the conversion needs") from None
    tokenizer = dict(pooler, fsq_dim=cfg.get("fsq_dim", eh),
                     fsq_input_levels=cfg.get("fsq_input_levels", [8, 8, 8, 5, 5, 5]),
                     fsq_input_num_quantizers=cfg.get("fsq_input_num_quantizers", 1))
    return {"transformer": transformer, "condition_encoder": condition, "audio_tokenizer": tokenizer,
            "audio_token_detokenizer": pooler}


def check_invariants(cfg: dict[str, Any], vae_cfg: dict[str, Any], text_cfg: dict[str, Any]) -> None:
    acoustic = cfg["audio_acoustic_hidden_dim"]
    eh = cfg.get("encoder_hidden_size", cfg["hidden_size"])
    layers = cfg["num_hidden_layers"]
    rules = [
        (cfg["in_channels"] == 3 * acoustic, f"in_channels ({cfg['in_channels']}) must be 3 x audio_acoustic_hidden_dim"),
        (cfg["timbre_hidden_dim"] == acoustic == vae_cfg.get("decoder_input_channels"),
         f"timbre_hidden_dim, audio_acoustic_hidden_dim and the VAE's decoder_input_channels must agree "
         f"({cfg['timbre_hidden_dim']}, {acoustic}, {vae_cfg.get('decoder_input_channels')})"),
        (cfg["text_hidden_dim"] == text_cfg.get("hidden_size"),
         f"text_hidden_dim ({cfg['text_hidden_dim']}) must equal the text encoder's hidden_size "
         f"({text_cfg.get('hidden_size')})"),
        (cfg.get("fsq_dim", eh) == eh, f"fsq_dim must equal the encoder hidden size ({eh})"),
        (cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0, "attention heads must be a multiple of kv heads"),
        (cfg["head_dim"] % 2 == 0, "head_dim must be even"),
        (len(cfg["layer_types"]) == layers, f"layer_types must have num_hidden_layers ({layers}) entries"),
        (len(cfg["layer_types"]) >= max(cfg["num_lyric_encoder_hidden_layers"], cfg["num_timbre_encoder_hidden_layers"],
                                        cfg.get("num_attention_pooler_hidden_layers", 2)),
         "layer_types must cover the lyric, timbre and pooler layers"),
    ]
    broken = [message for ok, message in rules if not ok]
    if broken:
        raise ConversionError("config.json breaks the checkpoint's shape rules: " + "; ".join(broken))


def module_classes() -> dict[str, type]:
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepAudioTokenDetokenizer, AceStepAudioTokenizer, AceStepConditionEncoder

    return {"transformer": AceStepTransformer1DModel, "condition_encoder": AceStepConditionEncoder,
            "audio_tokenizer": AceStepAudioTokenizer, "audio_token_detokenizer": AceStepAudioTokenDetokenizer}


def _load_strict(module: torch.nn.Module, name: str, weights: dict[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(expected[k].shape) != tuple(weights[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:4])})")
    if extra:
        problems.append(f"{len(extra)} left over ({', '.join(extra[:4])})")
    if wrong:
        shapes = ", ".join(f"{k} {tuple(weights[k].shape)} != {tuple(expected[k].shape)}" for k in wrong[:3])
        problems.append(f"{len(wrong)} with the wrong shape ({shapes})")
    if problems:
        raise ConversionError(f"{name}: {'; '.join(problems)}; refusing to save a checkpoint that diffusers would "
                              f"only warn about")
    module.load_state_dict(weights, strict=True, assign=True)  # the weights themselves (the module may be empty)


# --- the whole conversion -------------------------------------------------------------------------
def build_modules(source: Path, dit: str, dtype: torch.dtype = torch.bfloat16, version_override: str | None = None
                  ) -> tuple[dict[str, torch.nn.Module], dict[str, dict[str, torch.Tensor]], list[str]]:
    """The DiT's four modules built from the original layout with every check (configs, invariants, keys,
    shapes, silence latent), nothing written: (modules, their weights, stray buffers dropped)."""
    dit_dir = source / dit
    for folder in (dit_dir, source / VAE_DIR, source / TEXT_ENCODER_DIR):
        if not (folder / "config.json").is_file():
            raise ConversionError(f"{folder.name}/config.json is missing under the source folder")
    cfg = json.loads((dit_dir / "config.json").read_text())
    vae_cfg = json.loads((source / VAE_DIR / "config.json").read_text())
    text_cfg = json.loads((source / TEXT_ENCODER_DIR / "config.json").read_text())
    check_invariants(cfg, vae_cfg, text_cfg)
    version = model_version(dit, cfg, version_override)
    kwargs = module_kwargs(cfg, version)

    groups, dropped = route(read_state(dit_dir))
    groups["condition_encoder"]["silence_latent"] = read_silence_latent(dit_dir, cfg["timbre_hidden_dim"])
    groups = {name: {k: v.to(dtype) for k, v in weights.items()} for name, weights in groups.items()}
    _quiet()
    from accelerate import init_empty_weights

    classes = module_classes()
    modules = {}
    for name in MODULES:
        with init_empty_weights(include_buffers=False):  # no random init of billions of weights to overwrite
            module = classes[name](**kwargs[name])
        _load_strict(module, name, groups[name])
        modules[name] = module.to(dtype)
    return modules, groups, dropped


def pipeline_in_memory(source: Path, dit: str, dtype: torch.dtype = torch.bfloat16):
    """An ``AceStepPipeline`` straight from the original layout, converted in memory with the same checks as
    ``convert`` (the text encoder's too), nothing written."""
    from diffusers import AceStepPipeline, AutoencoderOobleck
    from transformers import AutoTokenizer

    modules, _, _ = build_modules(source, dit, dtype)
    text_encoder = _load_text_encoder(source / TEXT_ENCODER_DIR, dtype)
    return AceStepPipeline(**modules, vae=AutoencoderOobleck.from_pretrained(source / VAE_DIR),
                           text_encoder=text_encoder, tokenizer=AutoTokenizer.from_pretrained(source / TEXT_ENCODER_DIR),
                           scheduler=_new_scheduler())


def convert(source: Path, dit: str, out: Path, dtype: torch.dtype = torch.bfloat16,
            version_override: str | None = None, force: bool = False) -> Path:
    target = out / dit
    if target.exists() and not force:
        raise ConversionError(f"{target} exists; pass --force to replace it")
    dit_dir = source / dit
    if (dit_dir / "model_index.json").is_file():  # already diffusers layout: used as it is
        return _copy_tree(dit_dir, target)
    modules, groups, dropped = build_modules(source, dit, dtype, version_override)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dit}-converting-", dir=out))
    try:
        for name in MODULES:
            modules[name].save_pretrained(staging / name, safe_serialization=True, max_shard_size="5GB")
        del modules
        tokenizer_class = _text_encoder(source / TEXT_ENCODER_DIR, staging, dtype)
        shutil.copytree(source / VAE_DIR, staging / "vae")  # verbatim: the VAE stays in its own (fp32) weights
        _scheduler(staging)
        _model_index(staging, tokenizer_class)
        verify_saved(staging, groups, module_classes())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if dropped:
        print(f"dropped {len(dropped)} stray buffer(s): {', '.join(dropped[:4])}", file=sys.stderr)
    return target


def _quiet() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()


def _load_text_encoder(source: Path, dtype: torch.dtype):
    from transformers import Qwen3Model

    model, info = Qwen3Model.from_pretrained(source, dtype=dtype, output_loading_info=True)
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith("lm_head.")]
    bad = list(info.get("missing_keys", [])) + unexpected + list(info.get("mismatched_keys", []))
    if bad:
        raise ConversionError(f"{source.name}: the text encoder's weights do not match Qwen3Model "
                              f"({len(bad)} key(s), e.g. {bad[0]})")
    return model


def _text_encoder(source: Path, staging: Path, dtype: torch.dtype) -> str:
    from transformers import AutoTokenizer

    _load_text_encoder(source, dtype).save_pretrained(staging / "text_encoder", safe_serialization=True)
    (staging / "tokenizer").mkdir()
    for name in TOKENIZER_FILES + OPTIONAL_TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / "tokenizer" / name)
    return type(AutoTokenizer.from_pretrained(staging / "tokenizer")).__name__


def _new_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # the pipeline passes sigmas it has already shifted; the scheduler must not shift them again
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)


def _scheduler(staging: Path) -> None:
    _new_scheduler().save_pretrained(staging / "scheduler")


def _model_index(staging: Path, tokenizer_class: str) -> None:
    import diffusers

    index = {"_class_name": "AceStepPipeline", "_diffusers_version": diffusers.__version__,
             "transformer": ["diffusers", "AceStepTransformer1DModel"],
             "condition_encoder": ["ace_step", "AceStepConditionEncoder"],
             "audio_tokenizer": ["ace_step", "AceStepAudioTokenizer"],
             "audio_token_detokenizer": ["ace_step", "AceStepAudioTokenDetokenizer"],
             "vae": ["diffusers", "AutoencoderOobleck"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "Qwen3Model"], "tokenizer": ["transformers", tokenizer_class]}
    (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def verify_saved(staging: Path, groups: dict[str, dict[str, torch.Tensor]], classes: dict[str, type]) -> None:
    """Load every module back the way the pipeline will, and require nothing missing, extra or changed."""
    for name in MODULES:
        module, info = classes[name].from_pretrained(staging, subfolder=name, output_loading_info=True)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise ConversionError(f"{name} does not load cleanly after saving: {bad}")
        saved = module.state_dict()
        changed = [k for k, v in groups[name].items() if not torch.equal(saved[k].to(v.dtype), v)]
        if changed:
            raise ConversionError(f"{name}: {len(changed)} tensor(s) changed on the way to disk, e.g. {changed[0]}")


def _copy_tree(source: Path, target: Path) -> Path:
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.endswith(".part")):
        copy_resumable(path, target / path.relative_to(source))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="root folder in the original layout")
    parser.add_argument("--dit", default="acestep-v15-turbo")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint root to write (ACESTEP_CHECKPOINT_DIR)")
    parser.add_argument("--lm", default=None, help="LM folder to copy unchanged, or 'none'")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16",
                        help="dtype of the DiT, encoders and text encoder (the VAE keeps its own)")
    parser.add_argument("--model-version", choices=("turbo", "base", "sft"), default=None)
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--checkpoints", default=None,
                        help="the image's CHECKPOINTS build argument: 'none' (the slim image) converts nothing")
    args = parser.parse_args(argv)
    if args.checkpoints == "none":
        args.out.mkdir(parents=True, exist_ok=True)
        print("CHECKPOINTS=none: no checkpoint baked in (the worker takes them from the host's model cache)")
        return 0
    try:
        target = convert(args.source, args.dit, args.out, DTYPES[args.dtype], args.model_version, args.force)
        print(f"wrote {target}")
        if args.lm and args.lm.lower() != "none":
            lm_source = args.source / args.lm
            if not (lm_source / "config.json").is_file():
                raise ConversionError(f"{args.lm}/config.json is missing under the source folder")
            print(f"copied {_copy_tree(lm_source, args.out / args.lm)}")
    except ConversionError as err:
        print(f"convert: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
