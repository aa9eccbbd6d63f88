"""μ-law audio helpers for the test kit: fixture recordings, frames and speech energy.

Not used on the call path (the bridge never decodes audio); the fakes use them to play and listen.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from voiceagent.wav import read_ulaw

BYTES_PER_MS = 8  # μ-law, 8 kHz, mono
FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS  # 160
SILENCE_BYTE = 0xFF  # μ-law code for zero amplitude

# The words of each fixture recording (see fixtures/README.md): the fake server "recognises" caller
# speech by finding a fixture's bytes in what it was sent, and speaks these texts as transcripts.
FIXTURE_TEXTS: dict[str, str] = {
    "caller_book_table": "Hi, I would like to book a table for two people tonight at eight.",
    "caller_interrupt": "Wait, actually, make that four people.",
    "caller_goodbye": "Thank you, that's all. Goodbye.",
    "caller_transfer": "Can I please speak to a real person?",
    "agent_greeting": "Thank you for calling the Riverside Bistro. How can I help you today?",
    "agent_reply_long": (
        "Certainly, I can help you with a reservation. Tonight we have tables available at seven thirty, "
        "at eight, and at eight thirty. Would you like me to book the table at eight o'clock for two people? "
        "And may I have your name, please?"
    ),
    "agent_goodbye": "You're welcome. Have a lovely evening. Goodbye.",
    "line_noise": "",
}


@functools.cache
def load_fixture(name: str) -> bytes:
    """The μ-law bytes of a bundled fixture, by name without ``.wav`` (e.g. ``"caller_interrupt"``)."""
    if name not in FIXTURE_TEXTS:
        raise KeyError(f"no fixture named {name!r}; have {sorted(FIXTURE_TEXTS)}")
    raw = resources.files("voiceagent.testing").joinpath("fixtures", f"{name}.wav").read_bytes()
    return read_ulaw(raw)


def silence(ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (ms * BYTES_PER_MS)


def frames(audio: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split into ``size``-byte frames; the last one is padded with silence."""
    out = [audio[i : i + size] for i in range(0, len(audio), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes([SILENCE_BYTE]) * (size - len(out[-1]))
    return out


def _ulaw_table() -> np.ndarray:
    # ITU-T G.711 μ-law expansion of all 256 codes to 16-bit linear.
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    linear = magnitude - 0x84
    return np.where(sign != 0, -linear, linear).astype(np.int16)


_ULAW_TO_LINEAR = _ulaw_table()


def ulaw_to_linear(audio: bytes) -> np.ndarray:
    return _ULAW_TO_LINEAR[np.frombuffer(audio, dtype=np.uint8)]


def rms_dbfs(audio: bytes) -> float:
    """Loudness of a μ-law chunk in dB relative to full scale (silence → -inf)."""
    if not audio:
        return float("-inf")
    samples = ulaw_to_linear(audio).astype(np.float64)
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")
