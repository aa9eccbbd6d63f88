"""A Media Stream's wire, as the fake caller sees it (docs/protocol.md, "## 1. Twilio Media Streams"):
the messages Twilio sends, numbered as Twilio numbers them; the messages an app may send back, parsed
strictly; the playback buffer with its marks; the queued caller audio.

Pure: no I/O. ``fake_twilio.FakeTwilioCaller`` drives these from the test's event loop; the call set-up
before the stream (webhook, TwiML, upgrade) is ``twilio_dial``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from voiceagent.testing.audio import FRAME_BYTES, FRAME_MS, SILENCE_BYTE

TICK_SECONDS = FRAME_MS / 1000
MAX_LAG_TICKS = 2

# The three messages an app may send, by event: their exact top-level keys.
OUTBOUND_SHAPES: dict[str, frozenset[str]] = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def next_tick_at(scheduled: float, now: float, tick: float = TICK_SECONDS) -> float:
    """When the next tick is due: on the absolute schedule, unless that is more than
    ``MAX_LAG_TICKS`` in the past, in which case the schedule restarts from ``now`` (no burst)."""
    due = scheduled + tick
    return now if now - due > MAX_LAG_TICKS * tick else due


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class ClearRecord:
    """One ``clear``: when it came, how much had been played by then, how much it dropped."""

    media_ms: int
    played_bytes: int
    dropped_bytes: int


@dataclass(frozen=True, slots=True)
class EchoRecord:
    """One mark echo: when it was sent and how much had been played by then."""

    name: str
    media_ms: int
    played_bytes: int
    cleared: bool  # echoed because of a clear rather than because its audio was played


# ------------------------------------------------------------------------------ inbound messages

Message = dict[str, Any]


class InboundMessages:
    """The messages Twilio sends on one stream. Every message after ``connected`` carries the next
    ``sequenceNumber``, so build them in the order they are sent; media ``chunk`` numbers count from 1."""

    def __init__(self, *, account_sid: str, call_sid: str, stream_sid: str) -> None:
        self.account_sid, self.call_sid, self.stream_sid = account_sid, call_sid, stream_sid
        self._sequence = 0
        self._chunk = 0

    def connected(self) -> Message:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self, parameters: dict[str, str]) -> Message:
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": dict(parameters),
        }
        return self._numbered("start", {"start": start})

    def media(self, frame: bytes, timestamp_ms: int) -> Message:
        self._chunk += 1
        payload = base64.b64encode(frame).decode("ascii")
        media = {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(timestamp_ms), "payload": payload}
        return self._numbered("media", {"media": media})

    def mark(self, name: str) -> Message:
        """The echo of a mark the app sent."""
        return self._numbered("mark", {"mark": {"name": name}})

    def dtmf(self, digit: str) -> Message:
        return self._numbered("dtmf", {"dtmf": {"track": "inbound_track", "digit": digit}})

    def stop(self) -> Message:
        return self._numbered("stop", {"stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})

    def _numbered(self, event: str, body: Message) -> Message:
        self._sequence += 1
        return {"event": event, "sequenceNumber": str(self._sequence), "streamSid": self.stream_sid, **body}


# ------------------------------------------------------------------------------ outbound messages


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    audio: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    name: str


@dataclass(frozen=True, slots=True)
class OutboundClear:
    pass


OutboundMessage = OutboundMedia | OutboundMark | OutboundClear


class ProtocolViolation(ValueError):
    """A message Twilio would reject (it logs warning 31951 and ignores it)."""


def parse_outbound(frame: str | bytes, stream_sid: str) -> OutboundMessage:
    """Parse one WebSocket frame from the app, or raise ``ProtocolViolation`` saying what is wrong."""
    if not isinstance(frame, str):
        raise ProtocolViolation(f"binary frame ({len(frame)} bytes); Twilio accepts JSON text only")
    try:
        message = json.loads(frame)
    except ValueError:
        raise ProtocolViolation(f"not JSON: {_excerpt(frame)}") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(f"not a JSON object: {_excerpt(frame)}")
    event = message.get("event")
    if not isinstance(event, str) or event not in OUTBOUND_SHAPES:
        raise ProtocolViolation(f"unknown event {event!r}: {_excerpt(frame)}")
    _require_keys(message, OUTBOUND_SHAPES[event], event)
    _require_string(message["streamSid"], f"{event}.streamSid")
    if message["streamSid"] != stream_sid:
        raise ProtocolViolation(f"{event} for streamSid {message['streamSid']!r}, not {stream_sid!r}")
    if event == "media":
        return OutboundMedia(_decode_payload(message["media"]))
    if event == "mark":
        return OutboundMark(_mark_name(message["mark"]))
    return OutboundClear()


def _require_keys(obj: dict[str, Any], expected: frozenset[str], where: str) -> None:
    missing, extra = expected - obj.keys(), obj.keys() - expected
    if missing or extra:
        raise ProtocolViolation(f"{where}: missing {sorted(missing)}, unexpected {sorted(extra)}")


def _require_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProtocolViolation(f"{where} must be a string, got {type(value).__name__}")
    return value


def _require_object(value: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{where} must be an object, got {type(value).__name__}")
    _require_keys(value, keys, where)
    return value


def _decode_payload(media: Any) -> bytes:
    payload = _require_string(_require_object(media, frozenset({"payload"}), "media")["payload"], "media.payload")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolViolation(f"media.payload is not valid base64: {_excerpt(payload)}") from None


def _mark_name(mark: Any) -> str:
    name = _require_string(_require_object(mark, frozenset({"name"}), "mark")["name"], "mark.name")
    if not name:
        raise ProtocolViolation("mark.name is empty")
    return name


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ------------------------------------------------------------------------------ playback


class OutboundBuffer:
    """Twilio's outbound buffer: audio played in order, marks sitting at their positions.

    Positions are absolute byte offsets in everything ever buffered; ``consumed`` counts the bytes
    played or dropped. A mark is due once ``consumed`` reaches its position.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._consumed = 0
        self._marks: deque[tuple[int, str]] = deque()
        self._last_mark_at = 0  # absolute position of the newest mark

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def unmarked_bytes(self) -> int:
        """Audio received after the newest mark: its mark, if the app sends one, is still on the way."""
        return self._consumed + len(self._buffer) - self._last_mark_at

    @property
    def pending_marks(self) -> list[str]:
        return [name for _, name in self._marks]

    def add_audio(self, audio: bytes) -> None:
        self._buffer.extend(audio)

    def add_mark(self, name: str) -> list[str]:
        """Queue a mark; returns the marks due now (this one, when nothing is buffered)."""
        self._last_mark_at = self._consumed + len(self._buffer)
        self._marks.append((self._last_mark_at, name))
        return self._due()

    def play(self, max_bytes: int) -> tuple[bytes, list[str]]:
        """Play up to ``max_bytes``; returns them and the marks whose audio is now all played."""
        chunk = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        self._consumed += len(chunk)
        return chunk, self._due()

    def clear(self) -> tuple[int, list[str]]:
        """Drop all buffered audio; returns the bytes dropped and every pending mark, in order."""
        dropped = len(self._buffer)
        self._buffer.clear()
        self._consumed += dropped
        return dropped, self._due()

    def _due(self) -> list[str]:
        due = []
        while self._marks and self._marks[0][0] <= self._consumed:
            due.append(self._marks.popleft()[1])
        return due


class InboundAudio:
    """What the caller says: queued audio taken one frame at a time, silence when there is none."""

    def __init__(self) -> None:
        self._queue = bytearray()
        self.queued_total = 0  # bytes ever queued
        self.taken_total = 0  # bytes of queued audio taken so far

    def enqueue(self, audio: bytes) -> int:
        """Queue audio; returns the offset ``taken_total`` will reach once all of it is taken."""
        self._queue.extend(audio)
        self.queued_total += len(audio)
        return self.queued_total

    def take(self, size: int = FRAME_BYTES) -> bytes:
        """The next ``size`` bytes: queued audio first, padded with μ-law silence."""
        chunk = bytes(self._queue[:size])
        del self._queue[:size]
        self.taken_total += len(chunk)
        return chunk + bytes([SILENCE_BYTE]) * (size - len(chunk))
