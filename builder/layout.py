"""Where every checkpoint lives on Hugging Face and which files each needs (docs/checkpoints.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAIN_REPO = "ACE-Step/Ace-Step1.5"
VAE_DIR = "vae"
TEXT_ENCODER_DIR = "Qwen3-Embedding-0.6B"
DIT_IN_MAIN_REPO = ("acestep-v15-turbo",)
LM_IN_MAIN_REPO = ("acestep-5Hz-lm-1.7B",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_TOKENIZER_FILES = ("vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                            "chat_template.jinja")
WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.pt", "*.txt", "*.jinja")  # never the remote *.py code


class LayoutError(Exception):
    """A checkpoint folder lacks a file it needs; the message names it."""


@dataclass(frozen=True)
class Component:
    """One folder under the checkpoint root and where it comes from."""

    folder: str  # the folder name under the root
    repo: str
    subfolder: str | None  # inside the repo; None = the repo root
    kind: str  # "dit", "dit-diffusers", "vae", "text", "lm"

    def required(self, root: Path) -> list[str]:
        """Files that must be present (relative to the folder); shards come from the index when there is one."""
        base = root / self.folder
        if self.kind == "vae":
            return ["config.json", "diffusion_pytorch_model.safetensors"]
        if self.kind == "text":
            return ["config.json", *_weights(base, "model"), *TOKENIZER_FILES]
        if self.kind == "dit":
            return ["config.json", "silence_latent.pt", *_weights(base, "model")]
        if self.kind == "lm":
            return ["config.json", *_weights(base, "model"), "tokenizer.json", "tokenizer_config.json"]
        return ["model_index.json"]  # diffusers layout: the loader checks the rest


def _weights(base: Path, stem: str) -> list[str]:
    import json

    index = base / f"{stem}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [index.name, *shards]
    return [f"{stem}.safetensors"]


def dit_component(name: str, local_root: Path | None = None) -> Component:
    """Where the DiT comes from; a local folder that already holds ``model_index.json`` is the diffusers layout
    whatever its name."""
    if name.endswith("-diffusers") or (local_root is not None and (local_root / name / "model_index.json").is_file()):
        return Component(name, f"ACE-Step/{name}", None, "dit-diffusers")
    if name in DIT_IN_MAIN_REPO:
        return Component(name, MAIN_REPO, name, "dit")
    return Component(name, f"ACE-Step/{name}", None, "dit")


def lm_component(name: str) -> Component:
    if name in LM_IN_MAIN_REPO:
        return Component(name, MAIN_REPO, name, "lm")
    return Component(name, f"ACE-Step/{name}", None, "lm")


def components(dit: str, lm: str | None, local_root: Path | None = None) -> list[Component]:
    parts = [dit_component(dit, local_root)]
    if parts[0].kind == "dit":  # the original layout needs the shared VAE and text encoder
        parts += [Component(VAE_DIR, MAIN_REPO, VAE_DIR, "vae"),
                  Component(TEXT_ENCODER_DIR, MAIN_REPO, TEXT_ENCODER_DIR, "text")]
    if lm and lm.lower() != "none":
        parts.append(lm_component(lm))
    return parts


def check_present(root: Path, component: Component) -> None:
    missing = [f for f in component.required(root) if not (root / component.folder / f).is_file()]
    if missing:
        raise LayoutError(f"{component.folder}/ is missing {', '.join(missing)} (from {component.repo}"
                          f"{'/' + component.subfolder if component.subfolder else ''})")
