"""One long song's MP3 on several cores: parts encoded at once, joined where a listener cannot hear it.

A song is cut on MP3's frame grid (1,152 samples) into parts. Each later part starts ``LEAD_FRAMES`` early
and each earlier part runs ``TAIL_FRAMES`` late, so around every boundary both encoders have coded the same
audio; in that overlap LAME's state (its psychoacoustic model, its bit reservoir) converges, often to the
very same bytes. Frame ``j`` of a part that starts at grid frame ``g`` is frame ``g + j`` of the song, since
LAME's delay is the same for every part.

The join takes the earlier part's frames before a frame ``j`` and the later part's from ``j`` on. Two things
must agree there for the decoder to get exactly what each encoder meant:

- the window of each channel's last granule before ``j`` (long, start, short, stop): the next granule's
  overlap-add assumes it;
- the bit reservoir: the later part's frame ``j`` starts its data ``main_data_begin`` bytes back, in bytes
  its own earlier frames carried. Those bytes are copied into the earlier part's last frames, into room its
  own data left free; the join is only made where that room is large enough.

Among the frames where both hold, the first one from which the two streams are byte-identical is taken (the
joined file is then the one-piece file from there on); failing that, the last one, where the later encoder
has had the longest run-in. Where no frame qualifies (or the stream is not what LAME writes at a constant
bitrate), ``None`` is returned and the caller encodes in one piece. What is left at a join is the difference
of two valid codings of the same audio across one granule's overlap, at the level of the coding noise
(``tests/test_mp3_split.py`` measures it against the one-piece file); no sample is repeated or lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from inference.mp3.frames import SAMPLES_PER_FRAME, Frame, walk

LEAD_FRAMES = 48  # about a second at 48 kHz: LAME's state converges within it on music
TAIL_FRAMES = 16
WARM_FRAMES = 8  # no join before the later encoder has run this long
GUARD_FRAMES = 4  # nor in the earlier part's last frames, which its own end (LAME's flush) shapes
REACH_FRAMES = 12  # a reservoir back-pointer (at most 511 bytes) reaches this many frames at 32 kbps
MIN_PART_S = 15.0  # shorter parts are not worth their run-in


@dataclass(frozen=True)
class Part:
    first_frame: int  # the song's frame where this part's encode begins
    start: int  # first sample it encodes
    end: int  # one past its last sample


@dataclass
class _Join:
    a_end: int  # byte offset in the earlier stream where its kept frames end
    b_start: int  # byte offset in the later stream where its kept frames begin
    patch: list[tuple[int, bytes]] = field(default_factory=list)  # written over the earlier stream's free room


def plan(samples: int, sample_rate: int, parts: int) -> list[Part]:
    """``parts`` stretches of about equal length (fewer when the song is short), on the frame grid."""
    longest = int(samples / (MIN_PART_S * sample_rate))
    parts = max(1, min(parts, longest))
    frames = samples // SAMPLES_PER_FRAME
    bounds = [0] + [round(i * frames / parts) for i in range(1, parts)]
    out = []
    for i, first in enumerate(bounds):
        begin = max(0, first - LEAD_FRAMES) if i else 0
        end = samples if i == parts - 1 else (bounds[i + 1] + TAIL_FRAMES) * SAMPLES_PER_FRAME
        out.append(Part(begin, begin * SAMPLES_PER_FRAME, min(samples, end)))
    return out


def join(streams: Sequence[bytes], parts: Sequence[Part]) -> bytes | None:
    """The parts' MP3 streams (LAME's frames of each part, in order) as one stream of the whole song, or ``None``
    where a join cannot be made."""
    if len(streams) == 1:
        return streams[0]
    joins = []
    for i in range(1, len(parts)):
        boundary = parts[i].first_frame + LEAD_FRAMES
        found = _find_join(streams[i - 1], parts[i - 1].first_frame, streams[i], parts[i].first_frame,
                           boundary - LEAD_FRAMES + WARM_FRAMES, boundary + TAIL_FRAMES - GUARD_FRAMES)
        if found is None:
            return None
        joins.append(found)
    out = bytearray()
    for i, stream in enumerate(streams):
        piece = bytearray(stream)
        if i < len(joins):
            for offset, data in joins[i].patch:
                piece[offset:offset + len(data)] = data
        begin = joins[i - 1].b_start if i else 0
        end = joins[i].a_end if i < len(joins) else len(piece)
        out += piece[begin:end]
    return bytes(out)


def _find_join(a: bytes, a_first: int, b: bytes, b_first: int, lo: int, hi: int) -> _Join | None:
    """The join between stream ``a`` (its frame 0 is the song's ``a_first``) and ``b``, at a song frame in
    [lo, hi]."""
    a_from = lo - 1 - REACH_FRAMES - a_first
    fa = walk(a, a_from, hi - lo + 2 + REACH_FRAMES)
    fb = walk(b, 0, hi - b_first + 1 + REACH_FRAMES)
    if fa is None or fb is None or len(fa) < hi - lo + 2 + REACH_FRAMES or len(fb) < hi - b_first + 1:
        return None
    at_a = {a_first + a_from + i: frame for i, frame in enumerate(fa)}
    at_b = {b_first + i: frame for i, frame in enumerate(fb)}
    valid: list[tuple[int, int]] = []
    for j in range(lo, hi + 1):
        borrowed = _borrowed(at_b, j)
        room = at_a[j].payload_offset - max(f.data_end for g, f in at_a.items() if g < j)
        if at_a[j - 1].last_blocks != at_b[j - 1].last_blocks or borrowed > room:
            continue
        if _same(a, at_a, b, at_b, j - 1) and _same(a, at_a, b, at_b, j):
            return _join(fa, at_a, b, fb, at_b, j, borrowed)
        valid.append((j, borrowed))
    if not valid:
        return None
    j, borrowed = valid[-1]
    return _join(fa, at_a, b, fb, at_b, j, borrowed)


def _borrowed(at_b: dict[int, Frame], j: int) -> int:
    """Reservoir bytes before frame ``j``'s payload that frames from ``j`` on use."""
    reach = [at_b[k].data_start for k in range(j, j + REACH_FRAMES) if k in at_b]
    return max(0, at_b[j].payload_offset - min(reach))


def _same(a: bytes, at_a: dict[int, Frame], b: bytes, at_b: dict[int, Frame], j: int) -> bool:
    x, y = at_a[j], at_b[j]
    return a[x.start:x.start + x.size] == b[y.start:y.start + y.size]


def _join(fa: list[Frame], at_a: dict[int, Frame], b: bytes, fb: list[Frame], at_b: dict[int, Frame], j: int,
          borrowed: int) -> _Join:
    data = b"".join(b[o:o + n] for o, n in _spans(fb, at_b[j].payload_offset - borrowed, at_b[j].payload_offset))
    patch, used = [], 0
    for offset, length in _spans(fa, at_a[j].payload_offset - borrowed, at_a[j].payload_offset):
        patch.append((offset, data[used:used + length]))
        used += length
    return _Join(at_a[j].start, at_b[j].start, patch)


def _spans(frames: list[Frame], begin: int, end: int) -> list[tuple[int, int]]:
    """Reservoir positions [begin, end) as (stream offset, length) pieces of the frames' payloads."""
    spans = []
    for frame in frames:
        low, high = max(begin, frame.payload_offset), min(end, frame.payload_offset + frame.payload_size)
        if low < high:
            spans.append((frame.payload_start + low - frame.payload_offset, high - low))
    return spans


def parts_for(songs: int, cores: int, duration_s: float) -> int:
    """How many parts each of ``songs`` songs is cut into so that ``cores`` threads are busy."""
    return max(1, min(math.floor(cores / max(songs, 1)), int(duration_s / MIN_PART_S)))
