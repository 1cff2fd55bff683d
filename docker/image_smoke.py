"""Build the real Dockerfile and run the built image's own entrypoint in both modes, with no container runtime.

    make image-smoke            # = python docker/image_smoke.py (as root; installs podman and debootstrap)

What it does, on a machine with no docker daemon where ``podman run`` is refused:
1. a Debian base image made with ``debootstrap`` and ``podman import`` (kept as ``localhost/acestep-smoke-base``);
2. a copy of the tracked files as the build context, with a tiny random-weight checkpoint in the ORIGINAL
   ACE-Step 1.5 layout (and a tiny 5 Hz LM) in ``checkpoints-src/``, so the build's fetch, convert and verify
   steps really run (``CHECKPOINTS=context``); torch is the CPU wheel, mounted at build time (``TORCH_WHEELS``);
3. ``podman build --isolation=chroot`` of the Dockerfile, tagged ``localhost/acestep-worker:smoke``, timed;
4. the image's filesystem (``podman create`` + ``podman mount``) entered with ``chroot``, with the image's own
   ENV, WORKDIR and ENTRYPOINT: ``MODE=serverless`` runs RunPod's local test mode on the baked
   ``test_input.json`` and the songs must decode; ``MODE=pod`` serves the HTTP API and the guide's
   release_task -> query_result -> /v1/audio workflow (``tests/shell/guide_workflow.sh``) must fetch songs
   that decode;
5. rebuilds after editing one ``.py`` file of the context copy (``handler.py``, then ``inference/errors.py``),
   each required to reuse the dependency layer, and timed;
6. the slim flavour (``CHECKPOINTS=none``): no weights inside; the tiny checkpoint laid out as RunPod's model
   cache under ``/runpod-volume/huggingface-cache``; serverless mode converts it in memory (no network volume is
   mounted) and serves songs.

Figures go to ``.image-smoke/report.json`` and standard output; the last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' tiny checkpoint writers and helpers
WORK = ROOT / ".image-smoke"
TAG = "localhost/acestep-worker:smoke"
BASE_TAG = "localhost/acestep-smoke-base:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DIT, LM = "acestep-v15-turbo", "acestep-5Hz-lm-0.6B"
DEPS_STEP = "RUN python /tmp/deps/requirements.py"
CONVERT_STEP = "RUN python -m builder.convert"
VERIFY_STEP = "RUN python -m builder.verify"


def log(message: str) -> None:
    print(f"[image-smoke] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def ensure_tools() -> None:
    """podman and debootstrap for the build, curl and jq for the guide's workflow, from Debian's packages."""
    missing = [tool for tool in ("podman", "debootstrap", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        log(f"installing {', '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "podman", "buildah", "crun",
             "debootstrap", "curl", "jq"], env=env, stdout=subprocess.DEVNULL)


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag]).returncode == 0


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    targets = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])  # \040 is a space
               for line in Path("/proc/mounts").read_text().splitlines()]
    return sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True)


def unmount_below(path: Path) -> bool:
    """Unmount whatever is mounted inside ``path`` (debootstrap can leave its /proc mounted), deepest first;
    True when nothing is mounted there any more (only then may the folder be deleted)."""
    for target in mounts_below(path):
        subprocess.run(["umount", "-l", target], check=False)
    return not mounts_below(path)


def ensure_base() -> float:
    """A minimal Debian base image (what the CUDA base is for a GPU build); seconds spent making it."""
    if image_exists(BASE_TAG):
        return 0.0
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="acestep-base-", dir=WORK))
    rootfs = tmp / "rootfs"
    try:
        log("debootstrap bookworm (minbase)")
        run(["debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm", str(rootfs),
             "http://deb.debian.org/debian"], stdout=subprocess.DEVNULL)
        unmount_below(rootfs)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = tmp / "rootfs.tar"
        run(["tar", "--one-file-system", "-C", str(rootfs), "-cf", str(tar), "."])
        run(["podman", "import", str(tar), BASE_TAG], stdout=subprocess.DEVNULL)
    finally:
        if unmount_below(rootfs):  # never delete through a mount
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"left {tmp} in place: something is still mounted inside it")
    return time.perf_counter() - started


def make_context() -> Path:
    """The tracked and unignored files, copied, plus the tiny original-layout checkpoint in checkpoints-src/."""
    context = WORK / "context"
    shutil.rmtree(context, ignore_errors=True)
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True).stdout
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file() and not name.startswith(".image-smoke/"):
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
    from inference.lm.demo import make_demo_lm
    from tests.original_layout import write_original_checkpoint

    write_original_checkpoint(context / "checkpoints-src", DIT)
    make_demo_lm(context / "checkpoints-src" / LM)
    return context


def torch_version() -> str:
    """The torch release of the tests' environment (its CPU build), which the image is built with too."""
    return run([sys.executable, "-c", "import torch; print(torch.__version__.split('+')[0])"],
               capture_output=True).stdout.strip()


def torch_wheels() -> Path:
    """The CPU torch wheel, as pip here finds it (this machine keeps it on disk), in a folder to mount."""
    wheels = WORK / "wheels"
    if not list(wheels.glob("torch-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "-d", str(wheels), f"torch=={torch_version()}"])
    if not any("+cpu" in wheel.name for wheel in wheels.glob("torch-*.whl")):
        raise SystemExit("image-smoke: no CPU build of torch was found to build with")
    return wheels


def build(context: Path, wheels: Path, label: str, tag: str = TAG,
          checkpoints_dir: str = "checkpoints-src", checkpoints: str = "context") -> tuple[float, str]:
    """One podman build of the context; returns (seconds, log)."""
    cmd = ["podman", "build", "--isolation=chroot", "--network", "host", "--layers",
           "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-v", f"{wheels}:/wheels:ro",
           "--build-arg", f"BASE_IMAGE={BASE_TAG}", "--build-arg", "TORCH_WHEELS=/wheels",
           "--build-arg", f"TORCH_VERSION={torch_version()}",
           "--build-arg", f"CHECKPOINTS={checkpoints}", "--build-arg", f"CHECKPOINTS_DIR={checkpoints_dir}",
           "--build-arg", f"DIT_MODEL={DIT}", "--build-arg", f"LM_MODEL={LM}",
           "-t", tag, "-f", str(context / "Dockerfile"), str(context)]
    log(f"podman build ({label})")
    started = time.perf_counter()
    done = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    (WORK / f"build-{label}.log").write_text(done.stdout)
    if done.returncode != 0:
        print(done.stdout[-6000:])
        raise SystemExit(f"image-smoke: the build ({label}) failed; log in .image-smoke/build-{label}.log")
    log(f"built in {seconds:.1f} s")
    return seconds, done.stdout


def step_cached(build_log: str, step: str) -> bool:
    """Whether buildah reported the step that starts with ``step`` as taken from its cache."""
    lines = build_log.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"(\[\d+/\d+\] )?STEP \d+/\d+: ", line) and line.split(": ", 1)[1].startswith(step):
            following = next((x for x in lines[i + 1:] if x.startswith(("-->", "STEP "))), "")
            return following.startswith("--> Using cache")
    raise SystemExit(f"image-smoke: no build step starts with {step!r}")


def image_config(tag: str = TAG) -> dict:
    [info] = json.loads(run(["podman", "image", "inspect", tag], capture_output=True).stdout)
    return info


@contextmanager
def mounted_image(tag: str = TAG):
    """The image's root filesystem, with /proc and /dev bound, as a folder to chroot into."""
    container = run(["podman", "create", tag], capture_output=True).stdout.strip()
    root = None
    try:
        root = Path(run(["podman", "mount", container], capture_output=True).stdout.strip())
        run(["mount", "-t", "proc", "proc", str(root / "proc")])
        run(["mount", "--bind", "/dev", str(root / "dev")])
        (root / "dev/shm").mkdir(exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(root / "dev/shm")])  # the image's own /dev/shm
        yield root
    finally:
        if root is not None:
            unmount_below(root)
        subprocess.run(["podman", "umount", container], stdout=subprocess.DEVNULL)
        subprocess.run(["podman", "rm", "-f", container], stdout=subprocess.DEVNULL)


def entrypoint_command(root: Path, config: dict, extra_env: dict[str, str]) -> list[str]:
    """chroot + the image's ENV, WORKDIR and ENTRYPOINT, as a container runtime would start it."""
    env = dict(item.split("=", 1) for item in config["Config"]["Env"])
    env.update(extra_env)
    workdir = config["Config"].get("WorkingDir") or "/"
    entry = config["Config"]["Entrypoint"]
    script = "cd " + workdir + " && exec " + " ".join(entry)
    return ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c",
            script]


def decode(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    if info.frames <= 0 or info.samplerate != 48000 or info.channels != 2:
        raise SystemExit(f"image-smoke: {path.name} decodes to {info.frames} frames, {info.samplerate} Hz, "
                         f"{info.channels} channels")
    return info.frames / info.samplerate


def serverless(root: Path, config: dict) -> dict:
    """MODE=serverless: RunPod's local test mode on the image's test_input.json; the songs must decode."""
    expected = json.loads((root / "app/test_input.json").read_text())["input"]
    out = root / "tmp/smoke-serverless"
    shutil.rmtree(out, ignore_errors=True)
    cmd = entrypoint_command(root, config, {"MODE": "serverless", "ACESTEP_OUTPUT_DIR": "/tmp/smoke-serverless"})
    log("MODE=serverless: RunPod local test mode on /app/test_input.json")
    started = time.perf_counter()
    done = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    seconds = time.perf_counter() - started
    (WORK / "serverless.log").write_text(done.stdout)
    songs = sorted(out.glob(f"*.{expected.get('audio_format', 'mp3')}"))
    if done.returncode != 0 or len(songs) != expected["batch_size"]:
        print(done.stdout[-4000:])
        raise SystemExit(f"image-smoke: serverless mode exited {done.returncode} with {len(songs)} songs")
    durations = [decode(song) for song in songs]
    if any(abs(d - expected["audio_duration"]) > 0.5 for d in durations):
        raise SystemExit(f"image-smoke: serverless songs last {durations}, asked {expected['audio_duration']} s")
    log(f"serverless: {len(songs)} songs of {durations[0]:.2f} s decoded; process start to job served "
        f"{seconds:.1f} s")
    return {"songs": len(songs), "song_seconds": round(durations[0], 2), "start_to_served_s": round(seconds, 2)}


def pod(root: Path, config: dict) -> dict:
    """MODE=pod: the HTTP API; the guide's curl + jq workflow must download songs that decode."""
    import httpx

    from tests.conftest import free_port

    port = free_port()
    cmd = entrypoint_command(root, config, {"MODE": "pod", "ACESTEP_API_HOST": "127.0.0.1",
                                            "ACESTEP_API_PORT": str(port)})
    api = f"http://127.0.0.1:{port}"
    log(f"MODE=pod: the HTTP API on {api}")
    server_log = open(WORK / "pod.log", "w")
    started = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"image-smoke: pod mode exited {server.returncode}; see .image-smoke/pod.log")
            if time.perf_counter() - started > 300:
                raise SystemExit("image-smoke: pod mode did not answer /health within 300 s")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        listening = time.perf_counter() - started
        out = WORK / "pod-songs"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        done = subprocess.run(["bash", str(ROOT / "tests/shell/guide_workflow.sh")], text=True, capture_output=True,
                              env={**os.environ, "API_URL": api, "OUT_DIR": str(out)}, timeout=300)
        served = time.perf_counter() - started
        songs = [Path(line) for line in done.stdout.split()]
        if done.returncode != 0 or len(songs) != 2:
            raise SystemExit(f"image-smoke: the guide workflow failed ({done.returncode}): {done.stderr[-2000:]}")
        durations = [decode(song) for song in songs]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        server_log.close()
    log(f"pod: {len(songs)} songs of {durations[0]:.2f} s downloaded and decoded; listening after {listening:.1f} s, "
        f"first task served after {served:.1f} s")
    return {"songs": len(songs), "song_seconds": round(durations[0], 2), "start_to_listening_s": round(listening, 2),
            "start_to_served_s": round(served, 2)}


def slim(context: Path, wheels: Path) -> dict:
    """CHECKPOINTS=none: no weights in the image; the tiny checkpoint laid out as RunPod's model cache (the hub
    library's snapshot layout) under /runpod-volume; serverless mode must convert it (in memory: no network volume
    is mounted there) and serve songs."""
    from tests.hub_cache import cache_as_hub

    seconds, build_log = build(context, wheels, "slim", f"{TAG}-slim", checkpoints="none")
    if not step_cached(build_log, DEPS_STEP):
        raise SystemExit("image-smoke: the slim image rebuilt the dependency layer")
    info = image_config(f"{TAG}-slim")
    with mounted_image(f"{TAG}-slim") as root:
        if any((root / "app/checkpoints").glob("acestep-*")):
            raise SystemExit("image-smoke: the slim image holds checkpoints")
        hub = root / "runpod-volume/huggingface-cache/hub"
        cache_as_hub(context / "checkpoints-src", hub, "ACE-Step/Ace-Step1.5")
        cache_as_hub(context / "checkpoints-src" / LM, hub, f"ACE-Step/{LM}")  # this LM has a repo of its own
        served = serverless(root, info)  # /runpod-volume here is a folder, not a network volume: in memory
        log_text = (WORK / "serverless.log").read_text()
        if "in memory" not in log_text or (root / "runpod-volume/acestep-converted").exists():
            raise SystemExit("image-smoke: the slim image did not convert the cached checkpoint in memory")
    return {"build_s": round(seconds, 1), "image_bytes": info["Size"], "image_gib": round(info["Size"] / 2**30, 2),
            "serverless": served}


def edit(path: Path) -> None:
    path.write_text(path.read_text() + f"\n# image-smoke edit {time.time()}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-rebuild", action="store_true", help="skip the timed rebuilds after .py edits")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("image-smoke: run as root (chroot, mounts and rootful podman)")
    # a CI time-out sends SIGTERM: leave through the finally blocks, which unmount and stop the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    WORK.mkdir(exist_ok=True)
    ensure_tools()
    report: dict = {"base_image_s": round(ensure_base(), 1)}
    context = make_context()
    wheels = torch_wheels()
    report["build_s"], _ = build(context, wheels, "first")
    info = image_config()
    report["image_bytes"] = info["Size"]
    report["image_gib"] = round(info["Size"] / 2**30, 2)
    with mounted_image() as root:
        report["serverless"] = serverless(root, info)
        report["pod"] = pod(root, info)
    if not args.no_rebuild:
        # (label, the file edited, the steps that must come from the cache)
        for label, name, cached in (("edit-handler", "handler.py", (DEPS_STEP, CONVERT_STEP, VERIFY_STEP)),
                                    ("edit-inference", "inference/errors.py", (DEPS_STEP, CONVERT_STEP))):
            edit(context / name)
            seconds, build_log = build(context, wheels, label)
            for step in cached:
                if not step_cached(build_log, step):
                    raise SystemExit(f"image-smoke: editing {name} ran {step!r} again")
            report[f"rebuild_{label}_s"] = round(seconds, 1)
        # the other layout a context folder may hold: diffusers (as `make demo` writes it), in its own tag
        from inference.demo_checkpoint import make_demo_checkpoint

        make_demo_checkpoint(context / "checkpoints-diffusers" / DIT)
        shutil.copytree(context / "checkpoints-src" / LM, context / "checkpoints-diffusers" / LM)
        seconds, build_log = build(context, wheels, "diffusers-layout", f"{TAG}-diffusers", "checkpoints-diffusers")
        if not step_cached(build_log, DEPS_STEP):
            raise SystemExit("image-smoke: another checkpoint folder rebuilt the dependency layer")
        report["rebuild_diffusers_layout_s"] = round(seconds, 1)
        with mounted_image(f"{TAG}-diffusers") as root:
            report["serverless_diffusers_layout"] = serverless(root, image_config(f"{TAG}-diffusers"))
    report["slim"] = slim(context, wheels)
    report["build_s"] = round(report["build_s"], 1)
    (WORK / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"image_smoke build_s {report['build_s']} (cold: {report['base_image_s'] > 0}) image_gib {report['image_gib']} "
          f"serverless_start_to_served_s {report['serverless']['start_to_served_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
