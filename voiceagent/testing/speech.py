"""Text to speech for the simulated parties of a call: espeak-ng, at the phone line's 8 kHz μ-law.

The eval runner speaks a scenario's caller lines with it, and the fake model that follows the operator's
configuration (``fake_realtime.director``) speaks its greeting, ``say`` text and tool results with it.
espeak-ng is a distribution package (``apt-get install espeak-ng``, ``brew install espeak-ng``), not a
Python one: ``Speech.available()`` says whether it is installed, ``INSTALL_HINT`` how to install it.

Audio conversion uses the standard library's ``audioop`` (on Python >= 3.13 the ``audioop-lts`` package).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
import wave

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.11-3.12; audioop-lts on 3.13
    import audioop

__all__ = ["INSTALL_HINT", "Speech", "SpeechUnavailable"]

RATE = 8000
INSTALL_HINT = (
    "install espeak-ng, the text-to-speech program the simulated voices use: "
    "`apt-get install espeak-ng` (Debian, Ubuntu), `dnf install espeak-ng` (Fedora), `brew install espeak-ng` (macOS)"
)


class SpeechUnavailable(RuntimeError):
    """espeak-ng is not installed, or failed."""


class Speech:
    """Speaks text as 8 kHz μ-law with espeak-ng; each text is synthesised once (kept per instance)."""

    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 165, program: str = "espeak-ng") -> None:
        self.voice, self.words_per_minute, self.program = voice, words_per_minute, program
        self._said: dict[str, bytes] = {}

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def ulaw(self, text: str) -> bytes:
        """``text`` spoken, as 8 kHz mono μ-law; ``SpeechUnavailable`` if espeak-ng cannot be run."""
        cached = self._said.get(text)
        if cached is None:
            cached = self._said[text] = to_ulaw_8k(self._wav(text))
        return cached

    def _wav(self, text: str) -> bytes:
        command = [self.program, "--stdout", "-v", self.voice, "-s", str(self.words_per_minute), text]
        try:
            done = subprocess.run(command, capture_output=True, check=True, timeout=30)
        except FileNotFoundError:
            raise SpeechUnavailable(f"{self.program} is not installed: {INSTALL_HINT}") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise SpeechUnavailable(f"{self.program} failed: {exc}") from None
        return done.stdout


def to_ulaw_8k(wav_bytes: bytes) -> bytes:
    """A PCM WAV (any rate, 8/16-bit, mono or stereo) as 8 kHz mono μ-law. (espeak-ng writes to a pipe
    with the largest length in its header: reading "all" frames reads what there is.)"""
    with wave.open(io.BytesIO(wav_bytes), "rb") as reader:
        channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    frames = frames[: len(frames) - len(frames) % (width * channels)]
    if channels == 2:
        frames = audioop.tomono(frames, width, 0.5, 0.5)
    if width != 2:
        frames = audioop.lin2lin(frames, width, 2)
    if rate != RATE:
        frames, _ = audioop.ratecv(frames, 2, 1, rate, RATE, None)
    return audioop.lin2ulaw(frames, 2)
