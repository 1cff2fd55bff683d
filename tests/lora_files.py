"""Tiny LoRA adapters for the tiny DiT, made with PEFT as a trainer would, in both layouts a worker takes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import save, save_file

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]  # the DiT's attention projections, self and cross
_UPSTREAM = {".to_q.": ".q_proj.", ".to_k.": ".k_proj.", ".to_v.": ".v_proj.", ".to_out.0.": ".o_proj."}


def peft_lora(transformer, rank: int = 4, seed: int = 1, targets=ATTENTION) -> dict[str, torch.Tensor]:
    """PEFT's state dict of a random LoRA on ``transformer`` (keys ``layers.0.self_attn.to_q.lora_A.weight``):
    lora_B is random too, so the adapter changes what the DiT does."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    torch.manual_seed(seed)
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets,
                                               init_lora_weights=False), copy.deepcopy(transformer))
    state = get_peft_model_state_dict(model)
    return {k: v * 3.0 if "lora_B" in k else v for k, v in state.items()}  # strong enough to hear on a tiny DiT


def diffusers_file(state: dict[str, torch.Tensor], path: Path, alpha: float | None = None) -> Path:
    """What diffusers' ``save_lora_weights`` writes: ``transformer.``-prefixed keys, the alpha in the metadata."""
    rank = next(v for k, v in state.items() if "lora_A" in k).shape[0]
    metadata = {"format": "pt"}
    if alpha is not None:
        metadata["lora_adapter_metadata"] = json.dumps({"transformer.r": rank, "transformer.lora_alpha": alpha})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"transformer.{k}": v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def upstream_folder(state: dict[str, torch.Tensor], folder: Path, alpha: float) -> Path:
    """What ACE-Step's trainer writes (PEFT's ``save_pretrained`` of the DiT decoder): original module names
    under ``base_model.model.``, and ``adapter_config.json`` with the alpha."""
    rank = next(v for k, v in state.items() if "lora_A" in k).shape[0]

    def original(key: str) -> str:
        for ours, theirs in _UPSTREAM.items():
            key = key.replace(ours, theirs)
        return f"base_model.model.{key}"

    folder.mkdir(parents=True, exist_ok=True)
    save_file({original(k): v.contiguous() for k, v in state.items()}, str(folder / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none"}))
    return folder


def as_bytes(state: dict[str, torch.Tensor]) -> bytes:
    return save({f"transformer.{k}": v.contiguous() for k, v in state.items()})
