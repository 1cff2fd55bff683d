"""Encoding: decode what was encoded and check length, rate, channels, bitrate and peak safety."""

import numpy as np
import pytest

from conftest import decode
from inference.audio import encode, mp3_compression_level

RATE = 48_000


def tone(seconds=2.0, amplitude=0.8):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 554 * t)])).astype(np.float32)


@pytest.mark.parametrize("fmt,content_type", [
    ("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("flac", "audio/flac"), ("ogg", "audio/ogg"), ("opus", "audio/ogg"),
])
def test_every_format_decodes_to_the_same_length_rate_and_channels(fmt, content_type):
    samples = tone(2.0)
    encoded = encode(samples, RATE, fmt)
    audio, rate = decode(encoded.data)
    assert encoded.content_type == content_type and encoded.extension == fmt
    assert rate == RATE and audio.shape[1] == 2
    assert abs(audio.shape[0] - samples.shape[1]) <= RATE * 0.03  # lossy codecs may pad a frame
    # the left channel still correlates with the 440 Hz tone (the right with 554 Hz), past the codec's delay
    lag = int(np.argmax(np.correlate(audio[:4000, 0], samples[0, :2000], mode="valid")))
    n = min(audio.shape[0] - lag, samples.shape[1])
    assert np.corrcoef(audio[lag:lag + n, 0], samples[0, :n])[0, 1] > 0.9


@pytest.mark.parametrize("encoder", ["lameenc", "libsndfile"])
@pytest.mark.parametrize("kbps", [64, 128, 192, 320])
def test_mp3_bitrate_follows_the_request(kbps, encoder):
    seconds = 4.0
    encoded = encode(tone(seconds), RATE, "mp3", mp3_bitrate=kbps, mp3_encoder=encoder)
    measured = len(encoded.data) * 8 / seconds / 1000
    assert abs(measured - kbps) / kbps < 0.05, measured
    assert decode(encoded.data)[1] == RATE == encoded.sample_rate  # the song's rate at every bitrate


@pytest.mark.parametrize("encoder", ["lameenc", "libsndfile"])
def test_both_mp3_encoders_make_files_that_decode_to_the_song(encoder):
    samples = tone(3.0)
    audio, rate = decode(encode(samples, RATE, "mp3", mp3_encoder=encoder).data)
    assert rate == RATE and audio.shape == (samples.shape[1], 2)  # gapless, both encoders, at 192 kbps
    n = min(audio.shape[0], samples.shape[1]) - 4000
    lag = int(np.argmax(np.correlate(audio[:4000, 0], samples[0, :2000], mode="valid")))  # the encoder's delay
    assert np.corrcoef(audio[lag:lag + n, 0], samples[0, :n])[0, 1] > 0.99


def test_mp3_levels_cover_the_range_monotonically():
    levels = [mp3_compression_level(k) for k in (32, 96, 192, 320)]
    assert levels == sorted(levels, reverse=True) and 0.0 <= min(levels) and max(levels) <= 1.0


def test_lossless_round_trip_is_exact_to_16_bits():
    samples = tone(1.0, amplitude=0.5)
    for fmt in ("wav", "flac"):
        audio, _ = decode(encode(samples, RATE, fmt).data)
        assert np.max(np.abs(audio.T - samples)) < 2 / 32768


def test_overloud_and_non_finite_samples_do_not_wrap():
    samples = tone(1.0, amplitude=1.7)
    samples[0, 100:200] = np.nan
    audio, _ = decode(encode(samples, RATE, "wav").data)
    assert np.max(np.abs(audio)) <= 1.0
    assert np.all(audio[100:200, 0] == 0.0)
    # clipping keeps the sign: a positive overload stays near +1, it does not wrap to -1
    peak_index = int(np.argmax(samples[1]))
    assert audio[peak_index, 1] > 0.99


def test_encoding_several_songs_at_once_gives_the_same_files_in_order():
    from inference.audio import encode_all

    songs = [tone(1.0, amplitude=a) for a in (0.2, 0.5, 0.8)]
    together = encode_all(songs, RATE, "flac")
    assert [e.data for e in together] == [encode(s, RATE, "flac").data for s in songs]


@pytest.mark.parametrize("kbps", [32, 192, 320])
@pytest.mark.parametrize("channels", [1, 2])
def test_an_mp3_decodes_to_exactly_the_song_sample_for_sample(kbps, channels):
    """lameenc writes no gapless header; the worker adds LAME's Info frame, so a decoder skips the encoder's delay
    and the padding: the same number of samples, starting where the song starts."""
    frames = 48_017  # not a whole number of MP3 frames
    song = (0.3 * np.random.default_rng(channels).standard_normal((channels, frames))).astype(np.float32)
    audio, rate = decode(encode(song, RATE, "mp3", mp3_bitrate=kbps).data)
    assert rate == RATE and audio.shape == (frames, channels)
    if kbps >= 192:  # enough bits for noise to survive: the decoded samples line up with the song's, lag 0
        lags = range(-40, 41)
        fit = [np.dot(audio[100 + lag:20_100 + lag, 0], song[0, 100:20_100]) for lag in lags]
        assert lags[int(np.argmax(fit))] == 0


def test_the_gapless_frame_is_added_only_to_what_lame_writes_and_only_once():
    from inference.mp3.gapless import with_info_frame

    song = encode(tone(1.0), RATE, "mp3")
    assert with_info_frame(song.data, 48_000) == song.data  # it has one already: unchanged
    free_format = bytes([0xFF, 0xFB, 0x04, 0x00]) + bytes(400)  # bitrate index 0: no frame size to walk by
    assert with_info_frame(free_format, 1000) == free_format
    assert with_info_frame(b"ID3\x04" + bytes(100), 1000) == b"ID3\x04" + bytes(100)
