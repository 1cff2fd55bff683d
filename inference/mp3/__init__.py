"""MP3 by LAME: a song's parts encoded at once on several cores, joined inaudibly, with a gapless header.

``lame.py`` encodes one stretch, ``split.py`` plans the parts and joins their streams, ``gapless.py`` puts
LAME's Info frame in front so a decoder returns exactly the song, ``frames.py`` reads the stream.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

import numpy as np

from inference.mp3.gapless import with_info_frame
from inference.mp3.lame import MP3_MAX_KBPS, MP3_MIN_KBPS, lame_frames
from inference.mp3.split import join, parts_for, plan

__all__ = ["MP3_MAX_KBPS", "MP3_MIN_KBPS", "lame_mp3", "parts_for"]
log = logging.getLogger(__name__)


def lame_mp3(songs: list[np.ndarray], sample_rate: int, kbps: int, pool: Executor | None = None,
             parts: int = 1) -> list[bytes]:
    """Each [frames, channels] float32 song in [-1, 1] as a constant-bitrate MP3 file. With a ``pool``, every
    song is cut into ``parts`` (fewer for a short one) and all parts of all songs are encoded at once."""
    layouts = [plan(song.shape[0], sample_rate, parts if pool is not None else 1) for song in songs]
    if pool is None:
        streams = [[lame_frames(song, sample_rate, kbps)] for song in songs]
    else:
        pending = [[pool.submit(lame_frames, song[p.start:p.end], sample_rate, kbps) for p in layout]
                   for song, layout in zip(songs, layouts, strict=True)]
        streams = [[future.result() for future in futures] for futures in pending]
    out = []
    for song, layout, pieces in zip(songs, layouts, streams, strict=True):
        stream = join(pieces, layout)
        if stream is None:  # no frame near a boundary allows a clean join: this song in one piece
            log.warning("no clean MP3 join near a part boundary: a %.0f s song encoded in one piece",
                        song.shape[0] / sample_rate)
            stream = lame_frames(song, sample_rate, kbps)
        out.append(with_info_frame(stream, song.shape[0]))  # gapless: decoded exactly as long as the song
    return out
