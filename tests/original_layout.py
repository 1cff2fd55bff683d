"""A tiny ACE-Step 1.5 checkpoint in the ORIGINAL (non-diffusers) layout, written from docs/checkpoints.md section 2.

Key names and shapes come from the document's table of original keys, not from any converter, with seeded
random weights: ``<root>/<dit>/{config.json, model.safetensors, silence_latent.pt}``, ``<root>/vae/`` and
``<root>/Qwen3-Embedding-0.6B/`` (those two are already Hugging Face folders in the original layout too).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

H, I, LAYERS, HEADS, KV, HD, A, P, T, C = 32, 64, 2, 4, 2, 8, 8, 2, 16, 8  # C = timbre = acoustic
EH, POOL, FSQ = H, 5, H
LAYER_TYPES = ["sliding_attention", "full_attention"]

CONFIG = {
    "model_type": "acestep", "architectures": ["AceStepConditionGenerationModel"],
    "hidden_size": H, "intermediate_size": I, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
    "num_key_value_heads": KV, "head_dim": HD, "in_channels": 3 * A, "audio_acoustic_hidden_dim": A, "patch_size": P,
    "rope_theta": 1000000, "attention_bias": False, "attention_dropout": 0.0, "rms_norm_eps": 1e-6,
    "use_sliding_window": True, "sliding_window": 16, "layer_types": LAYER_TYPES, "text_hidden_dim": T,
    "timbre_hidden_dim": C, "num_lyric_encoder_hidden_layers": 2, "num_timbre_encoder_hidden_layers": 2,
    "pool_window_size": POOL, "fsq_dim": FSQ, "fsq_input_levels": [8, 8, 8, 5, 5, 5], "fsq_input_num_quantizers": 1,
    "num_attention_pooler_hidden_layers": 2, "vocab_size": 64003, "timbre_fix_frame": 750,
    "model_version": "turbo", "is_turbo": True,
}


def _attention(prefix: str, kv_in: int = H) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.q_proj.weight": (HEADS * HD, H), f"{prefix}.k_proj.weight": (KV * HD, kv_in),
            f"{prefix}.v_proj.weight": (KV * HD, kv_in), f"{prefix}.o_proj.weight": (H, HEADS * HD),
            f"{prefix}.q_norm.weight": (HD,), f"{prefix}.k_norm.weight": (HD,)}


def _encoder_layer(prefix: str) -> dict[str, tuple[int, ...]]:  # the 11 keys of an encoder layer
    return {**_attention(f"{prefix}.self_attn"), f"{prefix}.input_layernorm.weight": (EH,),
            f"{prefix}.post_attention_layernorm.weight": (EH,), f"{prefix}.mlp.gate_proj.weight": (I, EH),
            f"{prefix}.mlp.up_proj.weight": (I, EH), f"{prefix}.mlp.down_proj.weight": (EH, I)}


def original_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"decoder.scale_shift_table": (1, 2, H)}
    for i in range(LAYERS):  # 19 keys per DiT layer
        p = f"decoder.layers.{i}"
        shapes.update({f"{p}.scale_shift_table": (1, 6, H), f"{p}.self_attn_norm.weight": (H,),
                       f"{p}.cross_attn_norm.weight": (H,), f"{p}.mlp_norm.weight": (H,),
                       **_attention(f"{p}.self_attn"), **_attention(f"{p}.cross_attn", EH),
                       f"{p}.mlp.gate_proj.weight": (I, H), f"{p}.mlp.up_proj.weight": (I, H),
                       f"{p}.mlp.down_proj.weight": (H, I)})
    shapes.update({"decoder.proj_in.1.weight": (H, 3 * A, P), "decoder.proj_in.1.bias": (H,),
                   "decoder.condition_embedder.weight": (H, EH), "decoder.condition_embedder.bias": (H,),
                   "decoder.norm_out.weight": (H,), "decoder.proj_out.1.weight": (H, A, P),
                   "decoder.proj_out.1.bias": (A,)})
    for embed in ("time_embed", "time_embed_r"):
        shapes.update({f"decoder.{embed}.linear_1.weight": (H, 256), f"decoder.{embed}.linear_1.bias": (H,),
                       f"decoder.{embed}.linear_2.weight": (H, H), f"decoder.{embed}.linear_2.bias": (H,),
                       f"decoder.{embed}.time_proj.weight": (6 * H, H), f"decoder.{embed}.time_proj.bias": (6 * H,)})
    shapes.update({"encoder.text_projector.weight": (EH, T), "encoder.lyric_encoder.embed_tokens.weight": (EH, T),
                   "encoder.lyric_encoder.embed_tokens.bias": (EH,), "encoder.lyric_encoder.norm.weight": (EH,),
                   "encoder.timbre_encoder.special_token": (1, 1, EH),
                   "encoder.timbre_encoder.embed_tokens.weight": (EH, C),
                   "encoder.timbre_encoder.embed_tokens.bias": (EH,), "encoder.timbre_encoder.norm.weight": (EH,),
                   "null_condition_emb": (1, 1, EH)})
    for i in range(2):
        shapes.update(_encoder_layer(f"encoder.lyric_encoder.layers.{i}"))
        shapes.update(_encoder_layer(f"encoder.timbre_encoder.layers.{i}"))
        shapes.update(_encoder_layer(f"tokenizer.attention_pooler.layers.{i}"))
        shapes.update(_encoder_layer(f"detokenizer.layers.{i}"))
    shapes.update({"tokenizer.audio_acoustic_proj.weight": (EH, A), "tokenizer.audio_acoustic_proj.bias": (EH,),
                   "tokenizer.attention_pooler.special_token": (1, 1, EH),
                   "tokenizer.attention_pooler.embed_tokens.weight": (EH, EH),
                   "tokenizer.attention_pooler.embed_tokens.bias": (EH,),
                   "tokenizer.attention_pooler.norm.weight": (EH,),
                   "tokenizer.quantizer.project_in.weight": (6, FSQ), "tokenizer.quantizer.project_in.bias": (6,),
                   "tokenizer.quantizer.project_out.weight": (FSQ, 6), "tokenizer.quantizer.project_out.bias": (FSQ,)})
    shapes.update({"detokenizer.special_tokens": (1, POOL, EH), "detokenizer.embed_tokens.weight": (EH, EH),
                   "detokenizer.embed_tokens.bias": (EH,), "detokenizer.norm.weight": (EH,),
                   "detokenizer.proj_out.weight": (A, EH), "detokenizer.proj_out.bias": (A,)})
    return shapes


def write_original_checkpoint(root: Path, dit: str = "acestep-v15-turbo", seed: int = 0,
                              extra: dict[str, torch.Tensor] | None = None, drop: tuple[str, ...] = (),
                              silence: bool = True, config: dict | None = None) -> dict[str, torch.Tensor]:
    """Write the three folders; returns the DiT's source tensors (after ``extra``/``drop``)."""
    from diffusers import AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3Model

    from inference.demo_checkpoint import build_tokenizer

    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in original_shapes().items()}
    state.update(extra or {})
    for key in drop:
        state.pop(key)
    dit_dir = root / dit
    dit_dir.mkdir(parents=True, exist_ok=True)
    (dit_dir / "config.json").write_text(json.dumps(config or CONFIG, indent=2))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, dit_dir / "model.safetensors")
    if silence:
        torch.save(torch.randn(1, C, 15000, generator=generator), dit_dir / "silence_latent.pt")
    torch.manual_seed(seed)
    AutoencoderOobleck(encoder_hidden_size=2 * C, downsampling_ratios=[2, 4, 4, 6, 10],
                       channel_multiples=[1, 1, 2, 2, 2], decoder_channels=4, decoder_input_channels=C,
                       audio_channels=2, sampling_rate=48000).save_pretrained(root / "vae")
    tokenizer = build_tokenizer()
    Qwen3Model(Qwen3Config(hidden_size=T, intermediate_size=2 * T, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, head_dim=HD, vocab_size=len(tokenizer),
                           max_position_embeddings=4096)).save_pretrained(root / "Qwen3-Embedding-0.6B")
    tokenizer.save_pretrained(root / "Qwen3-Embedding-0.6B")
    return {k: v.to(torch.bfloat16) for k, v in state.items()}
