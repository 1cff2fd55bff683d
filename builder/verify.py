"""Verify a built checkpoint on CPU and write its manifest, so a broken build fails the image build.

    python -m builder.verify /app/checkpoints/acestep-v15-turbo [--dtype bfloat16] [--lm acestep-5Hz-lm-1.7B|none]
                             [--manifests DIR]

Loads the folder with the worker's own loader (strict weights, non-zero silence latent) in the target dtype
on the CPU, runs a 2-step generation of 5 s, checks the output's shape (batch, 2 channels, 5 s at the VAE's
rate) and that every sample is finite, then writes ``acestep_manifest.json`` (file sizes and sha256, library
versions, the check's figures). ``inference/load.py`` compares the sizes at every cold start. An LM folder,
(a sibling folder, named with --lm) is checked to load its config and tokenizer and gets a manifest too.
With ``--manifests DIR`` each manifest is also copied to ``DIR/<folder>/``, so the image build can take the
manifests from the verification stage without taking the weights from it again.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from inference.errors import CheckpointError
from inference.manifest import write_manifest

SECONDS, STEPS = 5.0, 2


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}


def verify_dit(folder: Path, dtype: str) -> dict:
    from inference.load import load_pipeline
    from inference.settings import Settings

    settings = Settings(ACESTEP_CONFIG_PATH=folder, ACESTEP_DEVICE="cpu", ACESTEP_DTYPE=dtype, ACESTEP_WARMUP=False)
    loaded = load_pipeline(settings)
    started = time.perf_counter()
    with torch.inference_mode():
        output = loaded.pipe(prompt=["builder check"], lyrics=["[Instrumental]"], audio_duration=SECONDS,
                             num_inference_steps=STEPS, guidance_scale=1.0,
                             generator=torch.Generator().manual_seed(0), output_type="pt")
    audio = output.audios
    seconds = time.perf_counter() - started
    frames = int(SECONDS * loaded.sample_rate)
    if audio.ndim != 3 or audio.shape[0] != 1 or audio.shape[1] != 2 or abs(audio.shape[-1] - frames) > frames * 0.05:
        raise CheckpointError(f"the check generation returned shape {tuple(audio.shape)}, expected (1, 2, ~{frames})")
    if not torch.isfinite(audio).all():
        raise CheckpointError("the check generation produced NaN or inf samples: the weights or dtype are broken")
    return {"dtype": dtype, "steps": STEPS, "seconds_of_audio": SECONDS, "output_shape": list(audio.shape),
            "peak": round(float(audio.abs().max()), 4), "generate_s": round(seconds, 2),
            "is_turbo": loaded.is_turbo, "supports_audio_codes": loaded.supports_audio_codes,
            "parameters_m": round(loaded.report.parameters_m, 2)}


def verify_lm(folder: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    codes = sum(1 for token in tokenizer.get_vocab() if token.startswith("<|audio_code_"))
    return {"model_type": config.model_type, "vocab": len(tokenizer), "audio_code_tokens": codes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the converted DiT folder (diffusers layout)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--lm", default=None, help="LM folder next to the DiT folder to check as well, or 'none'")
    parser.add_argument("--manifests", type=Path, default=None, help="also copy each manifest to DIR/<folder>/")
    parser.add_argument("--checkpoints", default=None,
                        help="the image's CHECKPOINTS build argument: 'none' (the slim image) has nothing to verify")
    args = parser.parse_args(argv)
    if args.checkpoints == "none":
        if args.manifests:
            args.manifests.mkdir(parents=True, exist_ok=True)
        print("CHECKPOINTS=none: nothing baked to verify")
        return 0
    written: list[Path] = []
    stamp = {"verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions()}
    try:
        check = verify_dit(args.folder, args.dtype)
        print(f"{args.folder.name}: {check['output_shape']} in {check['generate_s']} s, peak {check['peak']}")
        written.append(write_manifest(args.folder, {**stamp, "check": check}))
        if args.lm and args.lm.lower() != "none":
            lm_dir = args.folder.parent / args.lm
            lm = verify_lm(lm_dir)
            print(f"{lm_dir.name}: {lm}")
            written.append(write_manifest(lm_dir, {**stamp, "check": lm}))
        for manifest in written if args.manifests else ():
            (args.manifests / manifest.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(manifest, args.manifests / manifest.parent.name / manifest.name)
    except CheckpointError as err:
        print(f"verify: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"verify: {type(err).__name__}: {' '.join(str(err).split())[:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
