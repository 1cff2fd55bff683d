"""A LoRA file's bytes to an adapter for this DiT: checked, in diffusers' module names, at its trained strength.

Accepted: safetensors only (a pickle is refused before anything is parsed), in either layout

- diffusers' (``save_lora_weights``): ``transformer.<module>.lora_A.weight`` / ``lora_B.weight``, the alpha in
  the file's ``lora_adapter_metadata`` when it was saved with one;
- ACE-Step's trainer (PEFT's ``save_pretrained`` of the DiT decoder): ``base_model.model.<module>...`` with the
  original module names (``q_proj`` ...), the alpha in the folder's ``adapter_config.json``.

Every key must name a linear module of this DiT with matching shapes (``lora_A``: rank x inputs, ``lora_B``:
outputs x rank), in pairs; anything else is a one-line refusal naming the first key that is wrong. The strength
alpha / rank is folded into ``lora_B``, so the adapter is applied with PEFT at scaling 1 (diffusers would
otherwise take alpha = rank when the file does not say it, and play an upstream adapter at half strength).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

import torch

from builder.original_names import transformer_name
from inference.errors import InputError

_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<part>[AB])(?:\.default)?\.weight")
_PREFIXES = ("transformer.", "base_model.model.")


@dataclass(frozen=True)
class Adapter:
    """A checked adapter: PEFT keys of the transformer (``<module>.lora_A.weight``), strength folded in."""

    digest: str  # sha256 of what it was made from: the file and the alpha it was read with
    tensors: dict[str, torch.Tensor]
    ranks: dict[str, int]  # module -> rank

    @property
    def name(self) -> str:
        """Its adapter name in the model: the same for the same content, whatever it was called."""
        return f"lora_{self.digest[:16]}"

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def peft_metadata(self) -> dict:
        """The ``LoraConfig`` it is loaded with: exactly its modules, each at its rank, scaling 1."""
        common = max(set(self.ranks.values()), key=list(self.ranks.values()).count)
        odd = {module: rank for module, rank in self.ranks.items() if rank != common}
        return {"r": common, "lora_alpha": common, "target_modules": sorted(self.ranks),
                "rank_pattern": {f"^{m}$": r for m, r in odd.items()},
                "alpha_pattern": {f"^{m}$": r for m, r in odd.items()}}


def linear_shapes(transformer: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) of every linear module of the DiT, by name: what an adapter may target."""
    return {name: (module.in_features, module.out_features) for name, module in transformer.named_modules()
            if isinstance(module, torch.nn.Linear)}


def read_safetensors(data: bytes, field: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a pickle or anything else is refused unparsed."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if not 2 <= size <= len(data) - 8 or data[8:9] != b"{":  # a safetensors file: its header's length, then JSON
        if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":  # torch.save's zip, or a bare pickle
            raise InputError(f"{field}: a pickle (.bin, .pt, .ckpt) is never loaded; send the adapter as "
                             f".safetensors")
        raise InputError(f"{field}: not a safetensors file")
    try:
        header = json.loads(data[8:8 + size])
        from safetensors.torch import load

        tensors = load(data)
    except Exception:  # noqa: BLE001 - a damaged file, whatever the parser says
        raise InputError(f"{field}: not a readable safetensors file") from None
    metadata = header.get("__metadata__") or {}
    return tensors, {k: v for k, v in metadata.items() if isinstance(v, str)}


def parse_adapter(data: bytes, field: str, shapes: dict[str, tuple[int, int]],
                  adapter_config: dict | None = None) -> Adapter:
    """``data`` (a safetensors file) as an adapter of the DiT whose linear modules are ``shapes``."""
    tensors, metadata = read_safetensors(data, field)
    if not tensors:
        raise InputError(f"{field}: the file holds no tensors")
    strength_of = _strengths(metadata, adapter_config)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    originals: dict[str, str] = {}  # module -> its name in the file (the trainer's, for its alpha_pattern)
    for key, tensor in tensors.items():
        match = _KEY.fullmatch(_strip(key))
        if match is None:
            raise InputError(f"{field}: not a LoRA for this model: {_short(key)} is not a lora_A/lora_B weight")
        module = _module_name(match["module"])
        originals[module] = match["module"]
        if module not in shapes:
            raise InputError(f"{field}: not a LoRA for this model: {_short(key)} names no linear module of the DiT")
        if module in pairs and match["part"] in pairs[module]:
            raise InputError(f"{field}: {_short(key)} appears twice")
        if not tensor.is_floating_point() or tensor.ndim != 2:
            raise InputError(f"{field}: {_short(key)} must be a 2-D floating-point tensor")
        pairs.setdefault(module, {})[match["part"]] = tensor
    out, ranks = {}, {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise InputError(f"{field}: {module} has lora_{'A' if 'A' not in pair else 'B'} missing")
        a, b = pair["A"], pair["B"]
        inputs, outputs = shapes[module]
        rank = a.shape[0]
        if a.shape[1] != inputs or b.shape != (outputs, rank) or rank < 1:
            raise InputError(f"{field}: not a LoRA for this model: {module} is {outputs}x{inputs}, the adapter "
                             f"gives lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}")
        strength = strength_of(module, originals[module], rank)
        out[f"{module}.lora_A.weight"] = a.float().contiguous()
        out[f"{module}.lora_B.weight"] = (b.float() * strength).contiguous()
        ranks[module] = rank
    return Adapter(content_digest(data, adapter_config), out, ranks)


def content_digest(data: bytes, adapter_config: dict | None = None) -> str:
    """What an adapter is made from, as one key: its file's bytes and the trainer's alphas beside it."""
    digest = hashlib.sha256(data)
    config = adapter_config or {}
    digest.update(json.dumps([config.get("lora_alpha"), config.get("alpha_pattern")], sort_keys=True,
                             default=str).encode())
    return digest.hexdigest()


def _module_name(original: str) -> str:
    """A module's name in diffusers' transformer (``layers.0.self_attn.q_proj`` -> ``...to_q``)."""
    return transformer_name(original + ".")[:-1]


def _strip(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _short(key: str) -> str:
    return repr(key if len(key) <= 80 else key[:79] + "…")


def _strengths(metadata: dict[str, str], adapter_config: dict | None):
    """``(module, its name in the file, rank) -> alpha / rank`` as PEFT scales it: the trainer's config
    (``lora_alpha``, PEFT's default 8 when absent; ``alpha_pattern`` keys matched as PEFT matches them, by the
    module's name or a dotted suffix of it; ``use_rslora``: alpha / sqrt(rank)), else the alpha diffusers saved in
    the file's metadata, else alpha = rank (scaling 1)."""
    config = dict(adapter_config or {})
    from_trainer = bool(config)
    if not config and metadata.get("lora_adapter_metadata"):
        try:
            saved = json.loads(metadata["lora_adapter_metadata"])
        except ValueError:
            saved = {}
        config = {k.removeprefix("transformer."): v for k, v in saved.items() if isinstance(k, str)}
    alpha = config.get("lora_alpha", 8 if from_trainer else None)
    alpha = float(alpha) if isinstance(alpha, (int, float)) and alpha > 0 else None
    pattern = {str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()
               if isinstance(v, (int, float)) and v > 0}
    rslora = bool(config.get("use_rslora"))

    def strength(module: str, original: str, rank: int) -> float:
        chosen = alpha
        for key, value in pattern.items():
            if any(re.fullmatch(rf"(.*\.)?({key})", name) for name in (module, original)):
                chosen = value
                break
        if chosen is None:
            return 1.0
        return chosen / (math.sqrt(rank) if rslora else rank)

    return strength
