"""A tiny random-weight ACE-Step 1.5 checkpoint with the real on-disk layout, for demos and tests.

Every component is the real class, built with tiny sizes and saved with ``save_pretrained``, so the real
loading code (``inference.load``) loads it exactly as it loads the 2B turbo: ``model_index.json``,
``transformer/``, ``condition_encoder/`` (with a non-zero ``silence_latent``), ``audio_tokenizer/``,
``audio_token_detokenizer/``, ``vae/`` (48 kHz, hop 1920, so 25 latent frames a second), ``text_encoder/``
(Qwen3), ``tokenizer/`` (a byte-level BPE Qwen2 tokenizer) and ``scheduler/``. The weights are random
and seeded, so two builds are identical; the audio is noise. A ``RANDOM_WEIGHTS.txt`` marker makes the
loader say so loudly. Ten seconds of audio at batch 2 generates in well under a second on 2 CPU cores.

    python -m inference.demo_checkpoint --if-missing checkpoints/acestep-v15-turbo
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.load import RANDOM_WEIGHTS_MARKER

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# A few byte-pair merges so common words become single tokens, as in a real BPE vocabulary.
_MERGES = (("t", "h"), ("th", "e"), ("Ġ", "t"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"), ("Ġ", "a"),
           ("e", "n"), ("o", "u"), ("Ġ", "s"), ("Ġ", "the"), ("in", "g"), ("Ġ", "l"), ("l", "o"), ("v", "e"))


@dataclass(frozen=True)
class TinyConfig:
    hidden: int = 32
    intermediate: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 8
    acoustic: int = 8
    text_hidden: int = 16
    sliding_window: int = 16
    sample_rate: int = 48_000
    downsampling: tuple[int, ...] = (2, 4, 4, 6, 10)  # product 1920: 25 latent frames per second at 48 kHz
    seed: int = 0


def build_tokenizer():
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    for left, right in _MERGES:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=list(_MERGES), unk_token=None, bos_token=None,
                               eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def build_pipeline(config: TinyConfig = TinyConfig()):
    """The tiny pipeline in memory, with seeded random weights."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )
    from transformers import Qwen3Config, Qwen3Model

    c = config
    attention = dict(num_attention_heads=c.heads, num_key_value_heads=c.kv_heads, head_dim=c.head_dim,
                     rope_theta=1_000_000.0, sliding_window=c.sliding_window)
    layer_types = ["sliding_attention", "full_attention"] * (c.layers // 2) + ["sliding_attention"] * (c.layers % 2)
    torch.manual_seed(c.seed)
    tokenizer = build_tokenizer()
    transformer = AceStepTransformer1DModel(
        hidden_size=c.hidden, intermediate_size=c.intermediate, num_hidden_layers=c.layers,
        in_channels=3 * c.acoustic, audio_acoustic_hidden_dim=c.acoustic, patch_size=2, layer_types=layer_types,
        encoder_hidden_size=c.hidden, is_turbo=True, model_version="turbo", **attention)
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=c.text_hidden, intermediate_size=2 * c.text_hidden, num_hidden_layers=c.layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=c.head_dim, vocab_size=len(tokenizer),
        max_position_embeddings=4096, rope_theta=1_000_000.0))
    condition_encoder = AceStepConditionEncoder(
        hidden_size=c.hidden, intermediate_size=c.intermediate, text_hidden_dim=c.text_hidden,
        timbre_hidden_dim=c.acoustic, num_lyric_encoder_hidden_layers=c.layers,
        num_timbre_encoder_hidden_layers=c.layers, layer_types=layer_types, **attention)
    with torch.no_grad():  # a real checkpoint carries the VAE-encoded silence; zeros would be refused
        condition_encoder.silence_latent.copy_(torch.randn_like(condition_encoder.silence_latent) * 0.5)
    pooler = dict(hidden_size=c.hidden, intermediate_size=c.intermediate, audio_acoustic_hidden_dim=c.acoustic,
                  pool_window_size=5, num_attention_pooler_hidden_layers=2, layer_types=layer_types[:2], **attention)
    audio_tokenizer = AceStepAudioTokenizer(fsq_dim=c.hidden, fsq_input_levels=[8, 8, 8, 5, 5, 5],
                                            fsq_input_num_quantizers=1, **pooler)
    audio_token_detokenizer = AceStepAudioTokenDetokenizer(**pooler)
    vae = AutoencoderOobleck(
        # the encoder emits mean and scale: twice the latent channels, as the real VAE (128 -> 64)
        encoder_hidden_size=2 * c.acoustic, downsampling_ratios=list(c.downsampling), channel_multiples=[1, 1, 2, 2, 2],
        decoder_channels=4, decoder_input_channels=c.acoustic, audio_channels=2, sampling_rate=c.sample_rate)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    return AceStepPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
        condition_encoder=condition_encoder, scheduler=scheduler, audio_tokenizer=audio_tokenizer,
        audio_token_detokenizer=audio_token_detokenizer)


def make_demo_checkpoint(target: Path, config: TinyConfig = TinyConfig()) -> Path:
    """Write the tiny checkpoint to ``target`` (replacing it), atomically: a half-written one never exists."""
    return write_folder_atomically(
        target, lambda staging: build_pipeline(config).save_pretrained(staging, safe_serialization=True),
        "This checkpoint has the real ACE-Step 1.5 diffusers layout but tiny RANDOM weights.\n"
        "It exists to run the code path without downloads; its audio is noise.\n")


def write_folder_atomically(target: Path, write, random_weights_note: str) -> Path:
    """``write(staging)`` fills a staging folder next to ``target``, which then replaces ``target`` in one
    rename, with the random-weights marker inside."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / RANDOM_WEIGHTS_MARKER).write_text(random_weights_note)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", type=Path, help="checkpoint folder to write (replaced)")
    parser.add_argument("--if-missing", type=Path, metavar="DIR",
                        help="write DIR only when it holds no checkpoint (no model_index.json)")
    parser.add_argument("--lm", metavar="NAME", default=None,
                        help="also write a tiny random 5 Hz LM next to it, in folder NAME, when none is there")
    args = parser.parse_args(argv)
    if args.lm:
        lm_target = (args.if_missing or args.target).parent / args.lm
        if not (lm_target / "config.json").is_file():
            from inference.lm.demo import make_demo_lm

            make_demo_lm(lm_target)
            print(f"a TINY RANDOM-WEIGHT 5 Hz LM was written to {lm_target}", file=sys.stderr)
    target = args.if_missing or args.target
    if target is None:
        parser.error("give a target folder or --if-missing DIR")
    if args.if_missing and (target / "model_index.json").is_file():
        print(f"checkpoint present at {target}; leaving it as it is")
        return 0
    make_demo_checkpoint(target)
    banner = "=" * 78
    print(f"{banner}\nNo checkpoint was found, so a TINY RANDOM-WEIGHT checkpoint was written to\n  {target}\n"
          f"It has the real ACE-Step 1.5 layout and runs the real code, but its songs are noise.\n"
          f"For real music, bake real checkpoints with builder/ and point ACESTEP_CHECKPOINT_DIR at them.\n{banner}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
