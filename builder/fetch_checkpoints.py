"""Fetch the checkpoints into one root folder in the original ACE-Step 1.5 layout (or a diffusers folder as is).

    python -m builder.fetch_checkpoints --dest DIR [--dit acestep-v15-turbo] [--lm acestep-5Hz-lm-1.7B|none]
                                        [--source LOCAL_DIR] [--token-file FILE] [--check]

From Hugging Face (``huggingface_hub``; the token from ``HF_TOKEN``, else from ``--token-file`` when that file
exists, as a build secret is mounted at ``/run/secrets/hf_token``; only the files needed; interrupted downloads
resume), or with ``--source`` from a local folder of the same layout, for offline builds and tests: files
already complete are skipped, a partial copy (``.part``) resumes where it stopped, and a missing file is a
clear error naming it. Every component is checked complete at the end; ``--check`` does only that, in place
(the image build's check of a checkpoint folder taken from the build context).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from builder.layout import (
    OPTIONAL_TOKENIZER_FILES,
    WEIGHT_PATTERNS,
    Component,
    LayoutError,
    check_present,
    components,
)

CHUNK = 8 * 1024 * 1024


def copy_resumable(source: Path, target: Path) -> str:
    """Copy one file; returns 'skipped', 'resumed' or 'copied'. A partial copy lives at ``<target>.part``."""
    size = source.stat().st_size
    if target.is_file() and target.stat().st_size == size:
        return "skipped"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.is_file() else 0
    if done > size:
        partial.unlink()
        done = 0
    with open(source, "rb") as src, open(partial, "ab") as out:
        src.seek(done)
        shutil.copyfileobj(src, out, CHUNK)
    if partial.stat().st_size != size:
        raise LayoutError(f"copying {source.name} stopped at {partial.stat().st_size} of {size} bytes")
    os.replace(partial, target)
    return "resumed" if done else "copied"


def fetch_local(source: Path, dest: Path, component: Component) -> dict[str, int]:
    check_present(source, component)  # names the missing file before anything is copied
    names = list(component.required(source))
    if component.kind == "dit-diffusers":
        names = [str(p.relative_to(source / component.folder)) for p in (source / component.folder).rglob("*")
                 if p.is_file()]
    names += [f for f in OPTIONAL_TOKENIZER_FILES if (source / component.folder / f).is_file()]
    counts = {"copied": 0, "resumed": 0, "skipped": 0}
    for name in dict.fromkeys(names):
        counts[copy_resumable(source / component.folder / name, dest / component.folder / name)] += 1
    return counts


def fetch_hub(dest: Path, component: Component, token: str | None) -> None:
    from huggingface_hub import snapshot_download

    if component.subfolder:
        patterns = [f"{component.subfolder}/{p}" for p in WEIGHT_PATTERNS]
        local_dir = dest
    else:
        patterns = list(WEIGHT_PATTERNS) + (["*/*"] if component.kind == "dit-diffusers" else [])
        local_dir = dest / component.folder
    snapshot_download(component.repo, allow_patterns=patterns, local_dir=local_dir, token=token)
    if component.subfolder and component.subfolder != component.folder:
        os.replace(dest / component.subfolder, dest / component.folder)


def read_token(token_file: Path | None) -> str | None:
    """HF_TOKEN, else the token file's content, stripped (absent file = anonymous)."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    if token_file is not None and token_file.is_file():
        return token_file.read_text().strip() or None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, required=True, help="root folder to fill")
    parser.add_argument("--dit", default="acestep-v15-turbo", help="DiT checkpoint (default acestep-v15-turbo)")
    parser.add_argument("--lm", default="acestep-5Hz-lm-1.7B", help="5 Hz LM, or 'none'")
    parser.add_argument("--source", type=Path, help="copy from this local folder instead of Hugging Face")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file holding the Hugging Face token, used when HF_TOKEN is unset and the file exists")
    parser.add_argument("--check", action="store_true", help="only check that --dest holds every file needed")
    args = parser.parse_args(argv)
    token = read_token(args.token_file)
    local_root = args.dest if args.check else args.source
    try:
        for component in components(args.dit, args.lm, local_root):
            if args.check:
                check_present(args.dest, component)
                print(f"{component.folder}: complete ({component.kind})")
                continue
            if args.source:
                counts = fetch_local(args.source, args.dest, component)
                print(f"{component.folder}: {counts['copied']} copied, {counts['resumed']} resumed, "
                      f"{counts['skipped']} already complete")
            else:
                print(f"{component.folder}: downloading from {component.repo}", flush=True)
                fetch_hub(args.dest, component, token)
            check_present(args.dest, component)
    except LayoutError as err:
        print(f"fetch_checkpoints: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the hub's errors are long; one line, never the token
        message = str(err).replace(token, "***") if token else str(err)
        print(f"fetch_checkpoints: {type(err).__name__}: {' '.join(message.split())[:400]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
