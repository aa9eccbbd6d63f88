"""Twilio Media Streams messages (docs/protocol.md §1): strict parsing of what Twilio sends, and the
exactly-three shapes we may send back.

Parsing never raises on bad input from the wire: it raises ``BadMessage`` with a short reason the
adapter logs, and the call goes on (or ends cleanly, the adapter decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_MESSAGE_BYTES = 64 * 1024


class BadMessage(ValueError):
    """A frame from Twilio that is not a well-formed Media Streams message."""


# ---------------------------------------------------------------- inbound


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str] = field(default_factory=dict)
    media_format: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: str  # base64 μ-law, untouched


@dataclass(frozen=True, slots=True)
class MarkEcho:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str


TwilioEvent = Connected | Start | Media | MarkEcho | Dtmf | Stop


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadMessage(f"{what} is missing or not an object")
    return value


def _string(container: dict[str, Any], key: str, what: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"{what}.{key} is missing or not a string")
    return value


def parse(frame: str | bytes) -> TwilioEvent:
    """Parse one WebSocket frame from Twilio, or raise BadMessage."""
    if isinstance(frame, bytes):
        raise BadMessage("binary frame (Twilio sends JSON text)")
    if len(frame) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message of {len(frame)} characters exceeds {MAX_MESSAGE_BYTES}")
    try:
        message = orjson.loads(frame)
    except ValueError:
        raise BadMessage("not JSON") from None
    message = _object(message, "message")
    event = message.get("event")
    if event == "connected":
        return Connected()
    if event == "start":
        start = _object(message.get("start"), "start")
        parameters = start.get("customParameters") or {}
        if not isinstance(parameters, dict) or not all(isinstance(v, str) for v in parameters.values()):
            raise BadMessage("start.customParameters is not an object of strings")
        return Start(
            stream_sid=_string(message, "streamSid", "start"),
            call_sid=_string(start, "callSid", "start"),
            account_sid=account_sid if isinstance(account_sid := start.get("accountSid"), str) else "",
            parameters=dict(parameters),
            media_format=media_format if isinstance(media_format := start.get("mediaFormat"), dict) else {},
        )
    if event == "media":
        media = _object(message.get("media"), "media")
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise BadMessage("media.payload is missing or not a string")
        return Media(stream_sid=_string(message, "streamSid", "media"), payload=payload)
    if event == "mark":
        mark = _object(message.get("mark"), "mark")
        return MarkEcho(stream_sid=_string(message, "streamSid", "mark"), name=_string(mark, "name", "mark"))
    if event == "dtmf":
        dtmf = _object(message.get("dtmf"), "dtmf")
        return Dtmf(stream_sid=_string(message, "streamSid", "dtmf"), digit=_string(dtmf, "digit", "dtmf"))
    if event == "stop":
        return Stop(stream_sid=_string(message, "streamSid", "stop"))
    raise BadMessage(f"unknown event {str(event)[:40]!r}")


def parse_received(message: Mapping[str, Any]) -> TwilioEvent:
    """Parse an ASGI ``websocket.receive`` message (text or binary frame), or raise BadMessage."""
    text = message.get("text")
    return parse(text if text is not None else message.get("bytes") or b"")


# ---------------------------------------------------------------- outbound: exactly three shapes


@dataclass(frozen=True, slots=True)
class MediaMessage:
    payload: str  # base64 μ-law, untouched

    def to_wire(self, stream_sid: str) -> str:
        return orjson.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": self.payload}}).decode()


@dataclass(frozen=True, slots=True)
class SetMark:
    name: str

    def to_wire(self, stream_sid: str) -> str:
        return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": self.name}}).decode()


@dataclass(frozen=True, slots=True)
class ClearAudio:
    def to_wire(self, stream_sid: str) -> str:
        return orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()


TwilioCommand = MediaMessage | SetMark | ClearAudio
