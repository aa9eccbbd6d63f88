"""Small, self-contained policies of the call core: what to do with caller audio the model cannot take
yet, caller audio that comes too fast or in too many small chunks, warnings that repeat, and when to
(re)connect the model.

Each is pure (time is an argument), so the core stays a function of its inputs.
"""

from __future__ import annotations

import binascii
import random
from collections import deque

from voiceagent.call.actions import Action, Log
from voiceagent.call.inputs import CallerAudio

__all__ = ["CallerAudioBatch", "CallerBacklog", "CallerPace", "ConnectPolicy", "WarningLimiter"]


class CallerBacklog:
    """Caller audio held while no model session is ready, bounded: when full, the oldest goes first
    (the caller's latest words matter most), and what was dropped is counted."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._audio: deque[CallerAudio] = deque()
        self._bytes = 0
        self.dropped = 0  # bytes dropped since the last ``take``

    def keep(self, audio: CallerAudio) -> int:
        """Hold ``audio``; returns the bytes this pushed out."""
        self._audio.append(audio)
        self._bytes += audio.size
        pushed_out = 0
        while self._bytes > self._limit:
            oldest = self._audio.popleft()
            self._bytes -= oldest.size
            pushed_out += oldest.size
        self.dropped += pushed_out
        return pushed_out

    def take(self) -> list[CallerAudio]:
        """Everything held, in order; the backlog starts afresh."""
        audio = list(self._audio)
        self._audio.clear()
        self._bytes = self.dropped = 0
        return audio


class CallerAudioBatch:
    """Caller audio gathered into fewer, larger appends to the model.

    Each append costs a JSON encoding, a masked WebSocket frame and a system call; Twilio sends a frame
    every 20 ms. Gathering ``batch_bytes`` (say 60 ms) sends a third as many, and delays the caller's
    audio by up to the batch length less one frame. A batch closes when a frame fills it, so the transport
    must keep streaming (Twilio sends silence frames; a stream that stops is ended by the silence guard).
    With ``batch_bytes`` no larger than a frame, every frame is passed on untouched.
    """

    def __init__(self, batch_bytes: int) -> None:
        self._batch_bytes = batch_bytes
        self._pending = bytearray()

    def add(self, audio: CallerAudio) -> str | None:
        """The base64 payload to send now, or None while the batch is still filling.

        Raises ``binascii.Error`` if the payload is not base64 (nothing is added then)."""
        if not self._pending and audio.size >= self._batch_bytes:
            return audio.payload  # no batching, or a chunk as long as a batch: untouched
        self._pending += binascii.a2b_base64(audio.payload, strict_mode=True)
        return self.take() if len(self._pending) >= self._batch_bytes else None

    def take(self) -> str | None:
        """What has been gathered (base64), or None; the batch starts afresh."""
        if not self._pending:
            return None
        payload = binascii.b2a_base64(self._pending, newline=False).decode("ascii")
        self._pending.clear()
        return payload


class CallerPace:
    """A token bucket: up to ``pace`` × real time, with two seconds of audio as burst. Twilio sends at
    exactly real time; a stream far faster than that is not a phone call."""

    def __init__(self, pace: float, bytes_per_ms: int, now: float) -> None:
        self._rate = pace * 1000 * bytes_per_ms  # bytes per second
        self._burst = 2 * 1000 * bytes_per_ms
        self._tokens = float(self._burst)
        self._at = now
        self.dropped = 0  # bytes refused so far

    def restart(self, now: float) -> None:
        self._tokens, self._at = float(self._burst), now

    def admit(self, size: int, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if size > self._tokens:
            self.dropped += size
            return False
        self._tokens -= size
        return True


class WarningLimiter:
    """The first few of each kind of warning per call are logged; the rest are only counted (one peer's
    junk must not flood the log). ``not_logged`` goes into the call summary."""

    def __init__(self, per_kind: int) -> None:
        self._per_kind = per_kind
        self._counts: dict[str, int] = {}

    def admit(self, kind: str) -> int | None:
        """This warning's number if it should be logged, else None."""
        count = self._counts[kind] = self._counts.get(kind, 0) + 1
        return count if count <= self._per_kind else None

    def warning(self, kind: str, fields: dict[str, object]) -> list[Action]:
        """The warning's log line, with its number, if it is among the first few; else nothing."""
        count = self.admit(kind)
        return [] if count is None else [Log("warning", kind, {**fields, "count": count})]

    def not_logged(self) -> dict[str, int]:
        return {kind: count - self._per_kind for kind, count in self._counts.items() if count > self._per_kind}


class ConnectPolicy:
    """When the next model connect may happen: exponential back-off with jitter after failures (a failed
    handshake, or a session that died young), a give-up after ``attempts`` in a row, and at most
    ``per_minute`` connects per call whatever happens."""

    def __init__(self, *, attempts: int, first_delay: float, per_minute: int, seed: str) -> None:
        self.attempts = attempts
        self.per_minute = per_minute
        self._first_delay = first_delay
        self._jitter = random.Random(seed)  # deterministic per call
        self._recent: deque[float] = deque()
        self.failures = 0  # in a row

    def failed(self, now: float) -> float | None:
        """Count a failure; when to try again, or None to give up."""
        self.failures += 1
        if self.failures >= self.attempts:
            return None
        backoff = self._first_delay * 2.0 ** (self.failures - 1)
        return now + backoff * self._jitter.uniform(1.0, 1.25)

    def lived(self) -> None:
        """A session lived a healthy while: the next failure starts the count afresh."""
        self.failures = 0

    def next_allowed(self, now: float) -> float | None:
        """None if a connect may start now (and it is counted), else the earliest time one may."""
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            return self._recent[0] + 60
        self._recent.append(now)
        return None
