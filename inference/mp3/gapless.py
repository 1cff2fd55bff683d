"""The gapless header LAME writes itself when it can seek back to the start (libsndfile lets it) and ``lameenc``
does not: an MPEG-1 Layer III "Info" frame with the LAME extension, put in front of the audio frames.

It tells a decoder (mpg123, FFmpeg, browsers) how many frames the file holds and, in the LAME extension, the
encoder's delay and the padding after the last sample, so the decoded song is exactly as long as the one that
was encoded, with no leading silence. The layout is the Xing/LAME tag's: the frame header, a zeroed side
information block, ``Info``, the flags (frames, bytes, table of contents, quality), the frame and byte counts,
a 100-entry table of contents, a quality indicator, then the LAME extension (encoder version, VBR method,
lowpass, peak, replay gains, flags, bitrate, delay and padding in 12 bits each, misc, gain, preset, music
length, music CRC, tag CRC). The tag's CRC (CRC-16/ARC over every byte before it) is computed; the music's,
which decoders do not check, is left 0 (in Python it would cost a fifth of the encode).
"""

from __future__ import annotations

import struct

from inference.mp3.frames import KBPS, SAMPLES_PER_FRAME, frame_size

TAG_BYTES = 36 + 156  # header and two channels' side information, then the Xing and LAME fields
LAME_DELAY = 576  # LAME's own encoder delay; decoders add theirs (529) and skip both


def _crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC (LAME's), for the tag's few hundred bytes."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _frame_bytes(header: bytes) -> int:
    size = frame_size(header)
    if size is None:
        raise ValueError("not a constant-bitrate MPEG-1 Layer III frame LAME writes")
    return size


def with_info_frame(mp3: bytes, samples: int) -> bytes:
    """``mp3`` (LAME's frames, nothing else) with an Info frame in front telling ``samples``, the song's length in
    samples per channel; returned unchanged when it does not look like what LAME writes."""
    side = 17 if len(mp3) > 3 and mp3[3] >> 6 == 3 else 32
    if mp3[4 + side:8 + side] in (b"Info", b"Xing"):  # it has one already
        return mp3
    try:
        frames, offset = 0, 0
        while offset < len(mp3):
            offset += _frame_bytes(mp3[offset:offset + 4])
            frames += 1
        if offset != len(mp3) or not frames:
            return mp3
    except (ValueError, IndexError):
        return mp3
    first = mp3[:4]
    index = first[2] >> 4  # the Info frame may take a higher bitrate than the music to hold the tag, as LAME's does
    while True:
        header = bytes([first[0], first[1] | 0x01, (index << 4) | (first[2] & 0x0D), first[3]])  # no CRC or pad
        size = _frame_bytes(header)
        if size >= TAG_BYTES or index == len(KBPS) - 1:
            break
        index += 1
    padding = frames * SAMPLES_PER_FRAME - LAME_DELAY - samples
    if not 0 <= padding < 4096:
        return mp3
    side_info = 17 if first[3] >> 6 == 3 else 32  # mono or two channels
    total = size + len(mp3)
    kbps = KBPS[first[2] >> 4]  # the music's
    tag = bytearray(header + bytes(side_info))
    tag += b"Info" + struct.pack(">III", 0x0F, frames, total)
    tag += bytes(int(i * 256 / 100) for i in range(100))  # constant bitrate: a straight line
    tag += struct.pack(">I", 0)  # quality indicator
    tag += b"LAME3.100" + bytes([0x01, 0])  # tag revision 0, CBR; lowpass unknown
    tag += struct.pack(">f", 0.0) + bytes(4)  # peak, radio and audiophile gain: not measured
    tag += bytes([0, min(kbps, 255)])
    tag += ((LAME_DELAY << 12) | padding).to_bytes(3, "big")
    tag += bytes(4)  # misc, mp3 gain, preset and surround
    tag += struct.pack(">I", total) + struct.pack(">H", 0)  # music CRC: not checked by decoders, not computed
    tag += struct.pack(">H", _crc16(bytes(tag)))  # over everything before it: 190 bytes in stereo, 175 in mono
    if len(tag) > size:
        return mp3
    return bytes(tag) + bytes(size - len(tag)) + mp3
