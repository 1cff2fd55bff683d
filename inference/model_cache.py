"""Checkpoints from the host's Hugging Face cache when none are baked into the image (RunPod's cached models).

A RunPod endpoint may name a Hugging Face model to cache: the host downloads it, before the worker starts, to
``/runpod-volume/huggingface-cache/hub/models--ORG--NAME/snapshots/HASH/`` (the hub library's layout: files
are symlinks into ``blobs/``, ``refs/main`` names the snapshot). When the DiT folder the settings name does
not exist, the worker looks there, and in ``HF_HUB_CACHE`` / ``HF_HOME/hub`` when set, for the repos its
models come from (``builder/layout.py``): ``ACE-Step/Ace-Step1.5`` in the original layout, or a ``-diffusers``
repo. Nothing is downloaded.

A diffusers-layout snapshot is loaded as it is. The original layout is converted by ``builder.convert`` (the
same strict mapping and checks as an image build, not a copy of them): where a conversion can be kept for later
cold starts (``ACESTEP_CONVERTED_DIR``, or a writable network volume), once, into that folder under a key of the
snapshots it came from, and found done by every later start; where it cannot (only the container's own disk,
gone with it), in memory at every start, which costs no write and no read-back (``bench/cold_start.py --cache``
measures the three). Every file a component needs is checked first, so a
half-downloaded or foreign snapshot is one line naming what is missing, which every job then reports
(the worker stays up, never in a crash loop).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from builder.convert import MODULES
from builder.layout import (
    MAIN_REPO,
    TEXT_ENCODER_DIR,
    VAE_DIR,
    Component,
    LayoutError,
    check_present,
    components,
)
from inference.errors import CachedModelError
from inference.settings import RUNPOD_VOLUME, Settings, writable_folder

log = logging.getLogger("acestep.model_cache")
RUNPOD_HF_CACHE = Path(RUNPOD_VOLUME) / "huggingface-cache" / "hub"
BAKED_DTYPE = torch.bfloat16  # what builder.convert writes by default, and the image bakes
CONVERSION = "1"  # bump when builder.convert's output changes, so older conversions are not reused


def cache_roots(settings: Settings) -> list[Path]:
    """Hub caches to look in, in order: ACESTEP_HF_CACHE (RunPod's by default), HF_HUB_CACHE, HF_HOME/hub."""
    found: list[Path] = []
    for root in (settings.hf_cache_dir or RUNPOD_HF_CACHE, settings.hf_hub_cache,
                 settings.hf_home / "hub" if settings.hf_home else None):
        if root is not None and root.is_dir() and root.resolve() not in [r.resolve() for r in found]:
            found.append(root)
    return found


def snapshot(roots: list[Path], repo: str) -> Path | None:
    """The snapshot ``refs/main`` names of ``repo`` in the first cache holding it (or its only snapshot)."""
    for root in roots:
        folder = root / f"models--{repo.replace('/', '--')}"
        ref = folder / "refs" / "main"
        if ref.is_file():
            named = folder / "snapshots" / ref.read_text().strip()
            if named.is_dir():
                return named
        snapshots = sorted(p for p in (folder / "snapshots").glob("*") if p.is_dir())
        if len(snapshots) == 1:
            return snapshots[0]
    return None


@dataclass(frozen=True)
class Cached:
    """What the loader is given: settings naming the checkpoint folders, and for a conversion in memory the
    function that builds the pipeline for a dtype."""

    settings: Settings
    build: Callable[[Any], Any] | None = None


def with_cached_models(settings: Settings, lm_name: str | None) -> Cached:
    """``settings`` unchanged when its DiT folder exists; else settings pointing at the cache's checkpoints
    (``ACESTEP_CONFIG_PATH``, or a conversion in memory; ``ACESTEP_LM_MODEL_PATH`` for ``lm_name`` when the cache
    has it)."""
    if settings.dit_path.exists() or settings.config_path is not None:
        return Cached(settings)
    roots = cache_roots(settings)
    if not roots:
        return Cached(settings)  # no cache either: the loader says what it looked for
    dit_name = settings.dit_model
    parts = components(dit_name, None)
    dit = parts[0]
    where = ", ".join(str(r) for r in roots)
    dit_snapshot = snapshot(roots, dit.repo)
    if dit_snapshot is None:
        raise CachedModelError(f"no {dit_name} in {settings.checkpoint_dir} nor in the model cache ({where}): "
                              f"set the endpoint's cached model to {dit.repo}, or bake the checkpoints into the image")
    source = _source_folder(roots, parts, dit_snapshot)
    kept = settings.converted_folders  # looked up once: it may probe a volume by writing to it
    update: dict = {}
    build = None
    if dit.kind == "dit-diffusers":
        update["config_path"] = _as_named(dit_snapshot, dit_name, kept)
    elif (done := _converted_before(source, dit_name, kept)) is not None:
        update["config_path"] = done
    elif kept:  # a folder that later cold starts will find: converted into it once
        update["config_path"] = _converted(source, dit_name, kept)
    else:
        build = _in_memory(source, dit_name)
    if lm_name and settings.lm_model_path is None:
        lm_dir = _cached_lm(roots, lm_name, kept)
        if lm_dir is not None:
            update["lm_model_path"] = lm_dir
        elif settings.lm_model:  # named by the operator: it must be there (the tier's default may be missing)
            from builder.layout import lm_component

            raise CachedModelError(f"the model cache ({where}) has no {lm_name} (from {lm_component(lm_name).repo}): "
                                   f"cache it too, or set ACESTEP_LM_MODEL=none")
    return Cached(settings.model_copy(update=update), build)


def _source_folder(roots: list[Path], parts, dit_snapshot: Path) -> dict[str, Path]:
    """Where each component's folder is, every file it needs checked (a dangling link is a missing file)."""
    folders: dict[str, Path] = {}
    main = snapshot(roots, MAIN_REPO)
    for part in parts:
        if part.repo == parts[0].repo:
            base = dit_snapshot
        elif part.repo == MAIN_REPO and main is not None:
            base = main
        else:
            raise CachedModelError(f"the model cache has no {part.repo}, which {part.folder}/ comes from: cache it "
                                  f"too, or bake the checkpoints into the image")
        folders[part.folder] = _checked(part, base / part.subfolder if part.subfolder else base)
    return folders


def _checked(part: Component, folder: Path) -> Path:
    """``folder``, once every file ``part`` needs is in it (a dangling link into blobs/ is a missing file)."""
    try:
        check_present(folder.parent, replace(part, folder=folder.name))
    except LayoutError as err:
        raise CachedModelError(f"the cached snapshot of {part.repo} is incomplete or not ACE-Step's: {err}"
                               f" (a download still running, or a different repo?)") from None
    return folder


def _key(folders: dict[str, Path]) -> str:
    """The snapshots a conversion came from, as a folder name."""
    text = "|".join(f"{name}={path.resolve()}" for name, path in sorted(folders.items())) + f"|v{CONVERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _converted_before(folders: dict[str, Path], dit_name: str, kept: list[Path]) -> Path | None:
    key = _key(folders)
    for base in kept:
        done = base / key / dit_name
        if (done / "model_index.json").is_file():
            log.info("the cached %s was converted before: %s", dit_name, done)
            return done
    return None


def _in_memory(folders: dict[str, Path], dit_name: str) -> Callable[[Any], Any]:
    """The pipeline converted in memory at load, in the loader's dtype (no folder to keep a conversion for
    later cold starts, so none is written)."""
    def build(dtype):
        from builder.convert import ConversionError, pipeline_in_memory

        with tempfile.TemporaryDirectory(prefix="acestep-source-") as staging:
            _link_source(folders, dit_name, Path(staging))
            log.info("converting the cached %s in memory (no persistent ACESTEP_CONVERTED_DIR)", dit_name)
            try:  # in the image build's dtype first, so the weights are exactly a baked checkpoint's
                pipe = pipeline_in_memory(Path(staging), dit_name, BAKED_DTYPE)
            except ConversionError as err:
                raise CachedModelError(f"the cached {dit_name} cannot be converted: {err}") from None
        if dtype != BAKED_DTYPE:  # the weights' modules only: buffers (the text encoder's rotary table) keep theirs,
            for name in (*MODULES, "text_encoder"):  # and the loader casts the VAE as ACESTEP_VAE_DTYPE says
                getattr(pipe, name).to(dtype)
        return pipe

    return build


def _link_source(folders: dict[str, Path], dit_name: str, staging: Path) -> None:
    """The layout builder.convert reads, as links to the snapshots' folders."""
    for name in (dit_name, VAE_DIR, TEXT_ENCODER_DIR):
        os.symlink(folders[name].resolve(), staging / name)


def _converted(folders: dict[str, Path], dit_name: str, kept: list[Path]) -> Path:
    """The original layout converted into the first writable conversion folder, once."""
    key = _key(folders)
    for base in kept:
        if not writable_folder(base / key, parents=True):
            continue
        with _locked(base / key):  # another worker on this host may be converting the same snapshot
            if (base / key / dit_name / "model_index.json").is_file():
                return base / key / dit_name
            return _convert_into(folders, dit_name, base / key)
    raise CachedModelError(f"ACESTEP_CONVERTED_DIR is not writable: the cached {dit_name} cannot be converted into it")


@contextmanager
def _locked(folder: Path):
    with open(folder / ".converting.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_into(folders: dict[str, Path], dit_name: str, out: Path) -> Path:
    from builder.convert import ConversionError, convert

    staging = Path(tempfile.mkdtemp(prefix=".source-", dir=out))
    try:
        _link_source(folders, dit_name, staging)
        log.info("converting the cached %s into %s (once for this snapshot)", dit_name, out)
        try:
            return convert(staging, dit_name, out)  # never over a finished one (another host's, say)
        except ConversionError as err:
            if (out / dit_name / "model_index.json").is_file():
                return out / dit_name
            raise CachedModelError(f"the cached {dit_name} cannot be converted: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _as_named(snapshot_dir: Path, name: str, kept: list[Path]) -> Path:
    """A snapshot folder under its model's name (what the worker reports, not the snapshot's hash): a link."""
    for base in [*kept, Path(tempfile.gettempdir()) / "acestep-models"]:
        link = base / _key({name: snapshot_dir}) / name
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(snapshot_dir.resolve(), link)
        except FileExistsError:
            pass  # made before, or by another worker at the same moment
        except OSError:
            continue
        if link.resolve() == snapshot_dir.resolve():
            return link
    return snapshot_dir


def _cached_lm(roots: list[Path], lm_name: str, kept: list[Path]) -> Path | None:
    """The LM's folder in the cache, its files checked, under its own name; None when the cache lacks it."""
    from builder.layout import lm_component

    part = lm_component(lm_name)
    found = snapshot(roots, part.repo)
    if found is None:
        return None
    folder = found / part.subfolder if part.subfolder else found
    if not folder.is_dir():
        return None
    _checked(part, folder)
    return folder if part.subfolder else _as_named(folder, lm_name, kept)
