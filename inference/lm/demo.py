"""A tiny random-weight 5 Hz LM with the real tokenizer layout, for demos and tests.

A Qwen3 causal LM at tiny size, saved with ``save_pretrained``; its tokenizer is byte-level BPE with the
Qwen chat tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``), ``<think>``/``</think>`` and
``<|audio_code_N|>`` tokens, all found by name at run time. The real checkpoints carry 65,535 code tokens;
the tiny one carries the first 1,024, which keeps its tokenizer fast to build and load.
"""

from __future__ import annotations

from pathlib import Path

import torch

DEMO_CODES = 1024
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{% endif %}")


def build_lm_tokenizer(codes: int = DEMO_CODES):
    from inference.demo_checkpoint import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.add_tokens(["<think>", "</think>"], special_tokens=True)
    tokenizer.add_tokens([f"<|audio_code_{n}|>" for n in range(codes)], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_demo_lm(target: Path, seed: int = 0) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from inference.demo_checkpoint import write_folder_atomically

    def write(staging: Path) -> None:
        tokenizer = build_lm_tokenizer()
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(Qwen3Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=len(tokenizer), max_position_embeddings=4096, rope_theta=1_000_000.0,
            tie_word_embeddings=True, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id))
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    return write_folder_atomically(target, write, "A tiny 5 Hz LM with RANDOM weights: its plans are noise.\n")
