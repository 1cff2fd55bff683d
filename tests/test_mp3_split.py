"""One song's MP3 encoded in parts on several threads: the joined file decodes to the song, with no click, gap
or repeated sample at a join, and differs from a one-piece encode only by coding noise."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

import inference.mp3 as mp3
from inference.audio import encode, encode_all
from inference.hardware import usable_cores
from inference.mp3 import split
from inference.mp3.frames import SAMPLES_PER_FRAME as FRAME, walk

RATE = 48_000


def music(seconds: float, channels: int, seed: int) -> np.ndarray:
    """[channels, frames]: tones that swell and fade, a noise burst every half second (LAME switches to short
    blocks on them), a noise floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE) + 17
    t = np.arange(n) / RATE
    song = np.zeros((channels, n))
    for k in range(12):
        swell = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t)
        song[k % channels] += 0.05 * np.sin(2 * np.pi * rng.uniform(60, 4000) * t) * swell
    song += ((np.arange(n) % (RATE // 2)) < 800) * rng.standard_normal((channels, n)) * 0.3
    song += 0.02 * rng.standard_normal((channels, n))
    return np.clip(song, -0.99, 0.99).astype(np.float32)


def decode(data: bytes) -> np.ndarray:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == RATE
    return audio


def join_windows(song_frames: int, parts: int) -> list[tuple[int, int]]:
    """The stretch of samples around each boundary where a join may be (decoded samples: frame k of a stream
    is the song's samples from k * 1152 - 576)."""
    out = []
    for part in split.plan(song_frames, RATE, parts)[1:]:
        boundary = part.first_frame + split.LEAD_FRAMES
        lo, hi = boundary - split.LEAD_FRAMES + split.WARM_FRAMES, boundary + split.TAIL_FRAMES
        out.append(((lo - 2) * FRAME, (hi + 2) * FRAME))
    return out


def join_quality(song: np.ndarray, whole: np.ndarray, joined: np.ndarray, parts: int) -> tuple[float, float]:
    """The worst, over 3-frame windows sliding across every join's stretch, of the joined file's error against
    the song divided by the one-piece file's: (root-mean-square ratio, peak ratio)."""
    source = song.T
    worst_rms = worst_peak = 0.0
    for lo, hi in join_windows(source.shape[0], parts):
        for start in range(lo, hi - 3 * FRAME, FRAME):
            window = slice(start, start + 3 * FRAME)
            e_whole, e_joined = whole[window] - source[window], joined[window] - source[window]
            worst_rms = max(worst_rms, float(np.sqrt(np.mean(e_joined**2)) / np.sqrt(np.mean(e_whole**2))))
            worst_peak = max(worst_peak, float(np.abs(e_joined).max() / np.abs(e_whole).max()))
    return worst_rms, worst_peak


@pytest.fixture
def counted_parts(monkeypatch):
    calls = []
    real = mp3.lame_frames

    def counting(frames, *args):
        calls.append(frames.shape[0])
        return real(frames, *args)

    monkeypatch.setattr(mp3, "lame_frames", counting)
    return calls


@pytest.mark.parametrize("kbps, channels, seed", [(32, 2, 0), (32, 2, 1), (128, 1, 2), (192, 2, 3), (320, 2, 4)])
def test_a_song_encoded_in_parts_decodes_to_the_song_with_inaudible_joins(kbps, channels, seed, counted_parts):
    song = music(61, channels, seed)
    joined_file = encode_all([song], RATE, "mp3", kbps, threads=4)[0]
    assert len(counted_parts) == 4  # four parts, encoded at once
    whole_file = encode(song, RATE, "mp3", mp3_bitrate=kbps)
    assert len(walk(joined_file.data)) == len(walk(whole_file.data))  # frame for frame: none repeated or lost
    whole, joined = decode(whole_file.data), decode(joined_file.data)
    assert joined.shape == whole.shape == (song.shape[1], channels)  # exactly the song's length: no gap, no repeat
    for lo, hi in join_windows(song.shape[1], 4):  # lined up with the song across each join: lag 0
        lags = range(-40, 41)
        fit = [np.dot(joined[lo + lag:hi + lag, 0], song[0, lo:hi]) for lag in lags]
        assert lags[int(np.argmax(fit))] == 0
    rms, peak = join_quality(song, whole, joined, 4)
    assert rms <= 1.1 and peak <= 1.3, (rms, peak)  # no click: a join is coded as well as the one-piece file


def test_the_measure_hears_a_join_made_without_its_reservoir_bytes(monkeypatch):
    """The test above can fail: the same joins without the bytes the later part's first frame reads from the
    bit reservoir decode to audible garbage there."""
    song = music(61, 2, 1)
    real = split._join

    def without_patch(*args):
        made = real(*args)
        made.patch = []
        return made

    monkeypatch.setattr(split, "_join", without_patch)
    joined = decode(encode_all([song], RATE, "mp3", 32, threads=4)[0].data)
    whole = decode(encode(song, RATE, "mp3", mp3_bitrate=32).data)
    rms, peak = join_quality(song, whole, joined, 4)
    assert rms > 1.1 or peak > 1.3


def test_where_no_clean_join_exists_the_song_is_encoded_in_one_piece(monkeypatch, caplog):
    song = music(40, 2, 5)
    monkeypatch.setattr(split, "_find_join", lambda *args: None)
    joined = encode_all([song], RATE, "mp3", 192, threads=2)[0]
    assert joined.data == encode(song, RATE, "mp3", mp3_bitrate=192).data
    assert "encoded in one piece" in caplog.text


def test_short_songs_and_one_thread_are_encoded_in_one_piece(counted_parts):
    short = music(20, 2, 6)
    assert encode_all([short], RATE, "mp3", 192, threads=4)[0].data == encode(short, RATE, "mp3").data
    assert len(counted_parts) == 2  # under 30 s: one part each time
    long = music(40, 2, 7)
    assert encode_all([long], RATE, "mp3", 192, threads=1)[0].data == encode(long, RATE, "mp3").data


def test_a_batch_shares_the_threads_between_its_songs(counted_parts):
    songs = [music(61, 2, 8), music(61, 2, 9)]
    together = encode_all(songs, RATE, "mp3", 192, threads=4)
    assert len(counted_parts) == 4  # two parts per song
    assert [decode(e.data).shape[0] for e in together] == [s.shape[1] for s in songs]


def test_the_usable_cores_follow_the_containers_cpu_quota(tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # one and a half cores
    assert usable_cores(str(quota)) == min(2, usable_cores(str(tmp_path / "absent")))
    quota.write_text("max 100000\n")
    assert usable_cores(str(quota)) == usable_cores(str(tmp_path / "absent")) >= 1
