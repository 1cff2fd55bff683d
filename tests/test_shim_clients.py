"""Clients as users run them, against the shim over HTTP: the guide's curl + jq script and acestep-generate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, decode, start_shim, stop


@pytest.fixture(scope="module")
def shim_url(checkpoint_dir, tmp_path_factory):
    process, url = start_shim(checkpoint_dir, tmp_path_factory.mktemp("clients") / "outputs")
    try:
        yield url
    finally:
        stop(process)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq (.ci/run installs them)")
def test_the_guides_curl_and_jq_workflow(shim_url, tmp_path):
    done = subprocess.run(["bash", str(ROOT / "tests/shell/guide_workflow.sh")], capture_output=True, text=True,
                          env={**os.environ, "API_URL": shim_url, "OUT_DIR": str(tmp_path)}, timeout=300)
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert len(files) == 2
    for name in files:
        samples, rate = decode(Path(name).read_bytes())
        assert rate == 48000 and abs(samples.shape[0] / rate - 10) < 0.1


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "generate_music.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_cli_makes_numbered_files_for_a_batch(shim_url, tmp_path):
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("[Verse 1]\nneon rain\n\n[Chorus]\ndance all night\n")
    done = cli("--api-url", shim_url, "-c", "dance pop", "-f", str(lyrics), "-d", "10", "-b", "2",
               "-o", str(tmp_path / "dance.mp3"), "--seed", "7,8", "--poll-interval", "0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "dance_1.mp3"), str(tmp_path / "dance_2.mp3")]
    assert "100%" in done.stderr and "seed 7" in done.stderr
    one, _ = decode((tmp_path / "dance_1.mp3").read_bytes())
    two, _ = decode((tmp_path / "dance_2.mp3").read_bytes())
    assert one.shape == two.shape and abs(one.shape[0] / 48000 - 10) < 0.1 and not (one == two).all()


def test_cli_single_file_other_format_and_quiet(shim_url, tmp_path):
    done = cli("--api-url", shim_url, "--caption", "ambient drone", "--duration", "10", "--batch-size", "1",
               "--output", str(tmp_path / "drone"), "--format", "flac", "-q", "--poll-interval", "0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "drone.flac")] and done.stderr == ""
    assert decode((tmp_path / "drone.flac").read_bytes())[1] == 48000


def test_cli_failures_are_one_clear_line_and_nonzero(shim_url, tmp_path):
    refused = cli("--api-url", shim_url, "-c", "x", "-d", "5", "-o", str(tmp_path / "x.mp3"))
    assert refused.returncode == 1 and "audio_duration must be between 10 and 600" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.mp3").exists()
    unreachable = cli("--api-url", "http://127.0.0.1:9", "-c", "x", "-o", str(tmp_path / "y.mp3"))
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    missing = cli("--api-url", shim_url, "-c", "x", "-f", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "nope.txt" in missing.stderr


def test_cli_guides(tmp_path):
    lyrics = cli("--show-lyrics-help")
    caption = cli("--show-caption-help")
    assert lyrics.returncode == 0 and "[Chorus]" in lyrics.stdout
    assert caption.returncode == 0 and "instruments" in caption.stdout
