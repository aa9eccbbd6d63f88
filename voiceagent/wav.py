"""WAV files: written with the standard library's ``wave``; read with one small chunk reader.

``wave`` writes PCM and patches the header's sizes after every ``writeframes``, so a file written a
piece at a time is a valid WAV at every point (a recording survives the process being killed). It reads
PCM only: ``wave.open`` on the bundled μ-law fixtures, or an A-law phone recording, raises
``wave.Error: unknown format: 7`` (and, before Python 3.12, on any ``WAVE_FORMAT_EXTENSIBLE`` file). A
well-kept decoder (``soundfile``) decodes such files to PCM, which is not what the fixtures need (their
exact μ-law bytes, as a phone line carries them). So ``parse_wav`` walks the RIFF chunks itself: the
``fmt`` chunk's first 16 bytes and the ``data`` chunk, nothing more.
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["ALAW", "EXTENSIBLE", "PCM", "ULAW", "WavError", "WavFormat", "parse_wav", "pcm_writer", "read_ulaw"]

PCM, ALAW, ULAW, EXTENSIBLE = 1, 6, 7, 0xFFFE  # the fmt chunk's format tags


class WavError(ValueError):
    """A file that is not a WAV we can read; the message says what it is instead."""


@dataclass(frozen=True)
class WavFormat:
    tag: int  # PCM, ALAW or ULAW (an extensible file's sub-format)
    channels: int
    rate: int
    bits: int

    def describe(self) -> str:
        kind = {PCM: f"{self.bits}-bit PCM", ALAW: "A-law", ULAW: "μ-law"}.get(self.tag, f"format {self.tag}")
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{kind}, {self.rate} Hz, {layout}"


def parse_wav(data: bytes) -> tuple[WavFormat, bytes]:
    """The format and the sample bytes of a RIFF/WAVE file, whatever its encoding."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError("the WAV file's fmt chunk is truncated")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the tag
            fmt = WavFormat(tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the WAV file has no fmt chunk before its data")
            return fmt, body
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    raise WavError("the WAV file has no data chunk")


def read_ulaw(data: bytes) -> bytes:
    """The samples of a G.711 μ-law, 8 kHz, mono WAV file, byte for byte (what a phone line carries)."""
    fmt, samples = parse_wav(data)
    if fmt != WavFormat(ULAW, 1, 8000, 8):
        raise WavError(f"expected G.711 μ-law 8 kHz mono 8-bit, found {fmt.describe()}")
    return samples


def pcm_writer(file: BinaryIO, *, channels: int, rate: int, sample_bytes: int) -> wave.Wave_write:
    """A ``wave`` writer on an open binary ``file`` with its (empty) header already written, so the file is
    a valid WAV from the start; each ``writeframes`` keeps it valid. Closing the writer leaves ``file``
    open (``wave`` closes only files it opened itself)."""
    writer = wave.open(file, "wb")
    writer.setnchannels(channels)
    writer.setframerate(rate)
    writer.setsampwidth(sample_bytes)
    writer.writeframes(b"")  # writes the header, for zero frames
    return writer
