"""MP3 by LAME: a song's parts encoded at once on several cores, joined inaudibly, with a gapless header.

``lame.py`` encodes one stretch, ``split.py`` plans the parts and joins their streams, ``gapless.py`` puts
LAME's Info frame in front so a decoder returns exactly the song, ``frames.py`` reads the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from inference.mp3.gapless import with_info_frame
from inference.mp3.lame import MP3_MAX_KBPS, MP3_MIN_KBPS, lame_frames
from inference.mp3.split import join, parts_for, plan

__all__ = ["MP3_MAX_KBPS", "MP3_MIN_KBPS", "lame_mp3", "parts_for"]
log = logging.getLogger(__name__)


def lame_mp3(songs: list[np.ndarray], sample_rate: int, kbps: int, prepare: Callable[[np.ndarray], np.ndarray],
             pool: Executor | None = None, parts: int = 1) -> list[bytes]:
    """Each [channels, samples] song as a constant-bitrate MP3 file; ``prepare`` turns a stretch of it into
    [frames, channels] float32 in [-1, 1] (in the part's own thread). With a ``pool``, every song is cut into
    ``parts`` (fewer for a short one) and all parts of all songs are encoded at once."""
    layouts = [plan(song.shape[-1], sample_rate, parts if pool is not None else 1) for song in songs]

    def one(song: np.ndarray, start: int, end: int) -> bytes:
        return lame_frames(prepare(song[:, start:end]), sample_rate, kbps)

    if pool is None:
        streams = [[one(song, 0, song.shape[-1])] for song in songs]
    else:
        pending = [[pool.submit(one, song, p.start, p.end) for p in layout]
                   for song, layout in zip(songs, layouts, strict=True)]
        streams = [[future.result() for future in futures] for futures in pending]
    out = []
    for song, layout, pieces in zip(songs, layouts, streams, strict=True):
        stream = join(pieces, layout)
        if stream is None:  # no frame near a boundary allows a clean join: this song in one piece
            log.warning("no clean MP3 join near a part boundary: a %.0f s song encoded in one piece",
                        song.shape[-1] / sample_rate)
            stream = one(song, 0, song.shape[-1])
        out.append(with_info_frame(stream, song.shape[-1]))  # gapless: decoded exactly as long as the song
    return out
