"""Walking an MPEG-1 Layer III stream frame by frame, reading what a join of two streams needs.

Per frame: where it starts, its header, and from its side information the ``main_data_begin`` back-pointer
(how many bytes before the frame's own payload its audio data starts, in the bit reservoir the frames
share), the length of its audio data in bits, and the block type (window shape) of each channel's second
granule, which the next frame's first granule overlaps with. Only what LAME writes at a constant bitrate is
read: MPEG-1, Layer III, no free format; anything else is ``None``, and the caller encodes in one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLES_PER_FRAME = 1152
KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
RATES = (44100, 48000, 32000)


@dataclass(frozen=True)
class Frame:
    start: int  # byte offset of the header in the stream
    size: int  # bytes of the whole frame
    payload_start: int  # byte offset where the main-data bytes of this frame's slot begin
    payload_offset: int  # how many main-data bytes the frames before this one carry: its place in the reservoir
    main_data_begin: int  # its audio data starts this many reservoir bytes before its own payload
    data_bits: int  # length of its audio data (part2_3_length over granules and channels)
    last_blocks: tuple[int, ...]  # block type of each channel's second granule (0 long, 1 start, 2 short, 3 stop)

    @property
    def payload_size(self) -> int:
        return self.start + self.size - self.payload_start

    @property
    def data_start(self) -> int:
        """Where its audio data begins, as a position in the reservoir (the payloads laid end to end)."""
        return self.payload_offset - self.main_data_begin

    @property
    def data_end(self) -> int:
        return self.data_start + (self.data_bits + 7) // 8


def frame_size(header: bytes) -> int | None:
    """Bytes of the frame this header starts, or ``None`` for what is not a constant-bitrate MPEG-1 Layer III
    frame."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xFE != 0xFA:  # sync, MPEG-1, Layer III
        return None
    bitrate, rate = header[2] >> 4, (header[2] >> 2) & 3
    if not 0 < bitrate < 15 or rate == 3:  # free format, a bad bitrate or rate index
        return None
    return 144_000 * KBPS[bitrate] // RATES[rate] + ((header[2] >> 1) & 1)


class _Bits:
    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "big")
        self.left = 8 * len(data)

    def take(self, count: int) -> int:
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)


def _side_info(data: bytes, channels: int) -> tuple[int, int, tuple[int, ...]]:
    bits = _Bits(data)
    main_data_begin = bits.take(9)
    bits.take(5 if channels == 1 else 3)  # private bits
    bits.take(4 * channels)  # scfsi
    total, last = 0, []
    for granule in range(2):
        for _ in range(channels):
            total += bits.take(12)  # part2_3_length
            bits.take(9 + 8 + 4)  # big_values, global_gain, scalefac_compress
            block = 0
            if bits.take(1):  # window switching
                block = bits.take(2)
                bits.take(1 + 10 + 9)  # mixed block flag, table selects, subblock gains
            else:
                bits.take(15 + 4 + 3)  # table selects, region counts
            bits.take(3)  # preflag, scalefac_scale, count1table_select
            if granule == 1:
                last.append(block)
    return main_data_begin, total, tuple(last)


def walk(stream: bytes, first: int = 0, count: int | None = None) -> list[Frame] | None:
    """The frames of ``stream`` (LAME's frames and nothing else) from the ``first``-th on, ``count`` of them (all
    by default), or ``None`` when it is not such a stream. Reservoir positions count from the first one read;
    frames before it are stepped over by their headers alone."""
    frames: list[Frame] = []
    offset = reservoir = index = 0
    while offset < len(stream) and (count is None or len(frames) < count):
        header = stream[offset:offset + 4]
        size = frame_size(header)
        if size is None or offset + size > len(stream):
            return None
        if index >= first:
            channels = 1 if header[3] >> 6 == 3 else 2
            side_start = offset + 4 + (0 if header[1] & 1 else 2)  # a CRC follows the header when protected
            side_bytes = 17 if channels == 1 else 32
            main_data_begin, bits, last = _side_info(stream[side_start:side_start + side_bytes], channels)
            frame = Frame(offset, size, side_start + side_bytes, reservoir, main_data_begin, bits, last)
            frames.append(frame)
            reservoir += frame.payload_size
        offset += size
        index += 1
    return frames
