"""WAV files: written by the standard library's ``wave`` (valid after every write), read by one chunk
reader because ``wave`` reads PCM only."""

from __future__ import annotations

import io
import wave
from importlib import resources

import pytest

from voiceagent.wav import PCM, ULAW, WavError, WavFormat, parse_wav, pcm_writer, read_ulaw


def test_a_file_written_a_piece_at_a_time_is_a_valid_wav_after_every_piece() -> None:
    file = io.BytesIO()
    writer = pcm_writer(file, channels=2, rate=8000, sample_bytes=2)
    for pieces in range(1, 4):
        writer.writeframes(b"\x01\x00\x02\x00" * 100)
        with wave.open(io.BytesIO(file.getvalue())) as written:  # what a reader sees if the writer dies now
            assert (written.getnchannels(), written.getframerate(), written.getnframes()) == (2, 8000, 100 * pieces)
    writer.close()
    assert not file.closed  # the caller's file stays the caller's to close
    assert parse_wav(file.getvalue()) == (WavFormat(PCM, 2, 8000, 16), b"\x01\x00\x02\x00" * 300)


def test_the_bundled_mu_law_fixtures_are_read_byte_for_byte_where_wave_cannot_read_them() -> None:
    raw = resources.files("voiceagent.testing").joinpath("fixtures", "agent_greeting.wav").read_bytes()
    with pytest.raises(wave.Error, match="unknown format: 7"):
        wave.open(io.BytesIO(raw))
    fmt, samples = parse_wav(raw)
    assert fmt == WavFormat(ULAW, 1, 8000, 8) and read_ulaw(raw) == samples and len(samples) > 8000


def test_a_pcm_file_is_not_taken_for_phone_audio() -> None:
    file = io.BytesIO()
    pcm_writer(file, channels=1, rate=8000, sample_bytes=2).writeframes(b"\x00\x00" * 10)
    with pytest.raises(WavError, match="16-bit PCM, 8000 Hz, mono"):
        read_ulaw(file.getvalue())
