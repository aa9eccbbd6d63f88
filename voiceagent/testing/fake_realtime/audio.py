"""What the fake Realtime server hears and says: energy VAD, fixture recognition, output encoding.

All pure (sans-I/O): the session feeds bytes in and gets events and texts back.

``InputAudioBuffer`` is the session's input side: every byte received, the uncommitted part of it, and
the VAD listening to it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceagent.testing.audio import (
    BYTES_PER_MS,
    FIXTURE_TEXTS,
    FRAME_BYTES,
    FRAME_MS,
    load_fixture,
    rms_dbfs,
    ulaw_to_linear,
)
from voiceagent.testing.fake_realtime.dialect import SERVER_VAD_DEFAULTS

SPEECH_START_FRAMES = 3  # consecutive loud 20 ms frames before speech counts as started
_SIGNATURE_DBFS = -35.0  # fixture frames this loud are distinctive enough to search for
_SIGNATURE_WINDOWS = 12  # frames sampled from each fixture to recognise it
_RECOGNISED_FRACTION = 0.5  # share of a fixture's sampled frames that must be present


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int


VadEvent = SpeechStarted | SpeechStopped


@dataclass
class VoiceActivityDetector:
    """Energy VAD over the session's input audio, in 20 ms frames counted from the session start.

    It reads the growing input buffer itself (``scan``), so the sizes of the appends do not matter.
    """

    speech_dbfs: float
    speaking: bool = False
    _next_frame: int = 0
    _loud_run: int = 0
    _quiet_run: int = 0
    _first_loud_frame: int = 0

    def scan(self, audio: bytes | bytearray, *, prefix_padding_ms: int, silence_duration_ms: int) -> list[VadEvent]:
        """Events for every complete frame of ``audio`` (the whole session input) not yet examined."""
        events: list[VadEvent] = []
        view = memoryview(audio)
        while (self._next_frame + 1) * FRAME_BYTES <= len(audio):
            start = self._next_frame * FRAME_BYTES
            frame = bytes(view[start : start + FRAME_BYTES])
            event = self._on_frame(rms_dbfs(frame) >= self.speech_dbfs, prefix_padding_ms, silence_duration_ms)
            self._next_frame += 1
            if event is not None:
                events.append(event)
        return events

    def skip_to(self, audio_length: int) -> None:
        """Forget any speech in progress and ignore the audio before ``audio_length`` bytes."""
        self._next_frame = -(-audio_length // FRAME_BYTES)
        self.speaking = False
        self._loud_run = self._quiet_run = 0

    def _on_frame(self, loud: bool, prefix_padding_ms: int, silence_duration_ms: int) -> VadEvent | None:
        if loud:
            if self._loud_run == 0:
                self._first_loud_frame = self._next_frame
            self._loud_run += 1
            self._quiet_run = 0
        else:
            self._loud_run = 0
            self._quiet_run += 1
        if not self.speaking and self._loud_run >= SPEECH_START_FRAMES:
            self.speaking = True
            return SpeechStarted(max(0, self._first_loud_frame * FRAME_MS - prefix_padding_ms))
        if self.speaking and self._quiet_run * FRAME_MS >= silence_duration_ms:
            self.speaking = False
            return SpeechStopped((self._next_frame + 1) * FRAME_MS)
        return None


class InputAudioBuffer:
    """What a session has been sent: ``received`` (all of it) and the part not yet committed."""

    def __init__(self, speech_dbfs: float) -> None:
        self.received = bytearray()
        self._start = 0  # offset in ``received`` of the uncommitted input buffer
        self._vad = VoiceActivityDetector(speech_dbfs)

    @property
    def buffered_ms(self) -> float:
        return (len(self.received) - self._start) / BYTES_PER_MS

    def append(self, audio: bytes, turn_detection: dict[str, Any] | None) -> list[VadEvent]:
        """Add audio; with turn detection on, the speech starts and stops it completes."""
        self.received.extend(audio)
        if turn_detection is None:
            self.stop_listening()  # nobody listens to this audio for speech
            return []
        return self._vad.scan(
            self.received,
            prefix_padding_ms=turn_detection.get("prefix_padding_ms", SERVER_VAD_DEFAULTS["prefix_padding_ms"]),
            silence_duration_ms=turn_detection.get("silence_duration_ms", SERVER_VAD_DEFAULTS["silence_duration_ms"]),
        )

    def take_until(self, end_ms: int) -> bytes:
        """Commit the buffer up to ``end_ms`` of session audio (where the VAD heard speech stop)."""
        end = min(len(self.received), end_ms * BYTES_PER_MS)
        segment = bytes(self.received[self._start : end])
        self._start = max(self._start, end)
        return segment

    def take_all(self) -> bytes:
        """Commit the whole buffer (``input_audio_buffer.commit``); speech in progress is forgotten."""
        segment = bytes(self.received[self._start :])
        self.discard()
        return segment

    def discard(self) -> None:
        """Drop the uncommitted audio (``input_audio_buffer.clear``); speech in progress is forgotten."""
        self._start = len(self.received)
        self.stop_listening()

    def stop_listening(self) -> None:
        """Forget speech in progress and ignore everything received so far."""
        self._vad.skip_to(len(self.received))


@functools.cache
def _signatures() -> dict[str, tuple[bytes, ...]]:
    """For each fixture with words: a few loud, distinctive 160-byte frames of it."""
    found: dict[str, tuple[bytes, ...]] = {}
    for name, text in FIXTURE_TEXTS.items():
        if not text:
            continue
        audio = load_fixture(name)
        loud = [
            audio[i : i + FRAME_BYTES]
            for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES)
            if rms_dbfs(audio[i : i + FRAME_BYTES]) >= _SIGNATURE_DBFS and len(set(audio[i : i + FRAME_BYTES])) > 16
        ]
        step = max(1, len(loud) // _SIGNATURE_WINDOWS)
        found[name] = tuple(loud[::step][:_SIGNATURE_WINDOWS])
    return found


def recognised_fixtures(segment: bytes | bytearray) -> list[str]:
    """The names of the fixtures whose bytes appear in ``segment``, in the order they were said."""
    heard: list[tuple[int, str]] = []
    data = bytes(segment)
    for name, windows in _signatures().items():
        positions = [pos for pos in (data.find(w) for w in windows) if pos >= 0]
        if windows and len(positions) >= _RECOGNISED_FRACTION * len(windows):
            heard.append((min(positions), name))
    return [name for _, name in sorted(heard)]


def recognise(segment: bytes | bytearray) -> str:
    """The words of the fixtures whose bytes appear in ``segment``, in order; ``""`` if none does."""
    return " ".join(FIXTURE_TEXTS[name] for name in recognised_fixtures(segment))


def bytes_per_ms(audio_format: str) -> int:
    """Bytes per millisecond of a normalised format (``pcm`` is 16-bit 24 kHz)."""
    return 48 if audio_format == "pcm" else BYTES_PER_MS


def encode_output(ulaw: bytes, audio_format: str) -> bytes:
    """Fixture audio (μ-law 8 kHz) in the session's output format. ``pcm`` is 16-bit little-endian
    24 kHz (each sample repeated three times): what a model that ignored ``audio/pcmu`` sends, which a
    phone plays as static. ``pcma`` is not emulated: the μ-law bytes are sent unchanged."""
    if audio_format != "pcm":
        return ulaw
    return np.repeat(ulaw_to_linear(ulaw), 3).astype("<i2").tobytes()


def words_until(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``'s words (how much of a reply was spoken by some point)."""
    words = text.split()
    return " ".join(words[: round(len(words) * min(max(fraction, 0.0), 1.0))])


def transcription_usage(model: str, audio_ms: float, transcript: str) -> dict[str, Any]:
    """The ``usage`` of a transcription event: whisper bills by duration, the others by tokens."""
    if model.startswith("whisper"):
        return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
    input_tokens, output_tokens = max(1, round(audio_ms / 100)), len(transcript.split())
    return {
        "type": "tokens",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
