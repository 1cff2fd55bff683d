"""How ACE-Step 1.5's own module names map onto diffusers' ``AceStepTransformer1DModel``: shared by the
checkpoint converter (``builder/convert.py``) and the worker's LoRA loader (``inference/lora/``), whose upstream
adapters name the DiT's modules the original way."""

from __future__ import annotations

import re

# the attention projections and norms of every block
RENAMES = ((".q_proj.", ".to_q."), (".k_proj.", ".to_k."), (".v_proj.", ".to_v."), (".o_proj.", ".to_out.0."),
           (".q_norm.", ".norm_q."), (".k_norm.", ".norm_k."))


def transformer_name(original: str) -> str:
    """A key of the original DiT decoder (without its ``decoder.`` prefix) in diffusers' transformer's names."""
    name = re.sub(r"^proj_in\.1\.", "proj_in_conv.", original)
    name = re.sub(r"^proj_out\.1\.", "proj_out_conv.", name)
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name
