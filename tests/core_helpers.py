"""What the call-core tests share: an injected clock, a core brought up to a ready call, Twilio frames.

Plain functions only (no fixtures): ``from core_helpers import Clock, ready_core, ...``. Nothing here
reads a clock or touches a socket; ``now`` is always a value the test chose.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, TypeVar
from unittest.mock import ANY

from voiceagent.call import (
    CallCore,
    CallOptions,
    ConnectModel,
    ConnectPurpose,
    Log,
    Observation,
    SendToModel,
    StreamStarted,
    UseNewModel,
    log_line,
)
from voiceagent.call.actions import Action
from voiceagent.realtime import events as ev

STREAM = "MZ" + "a" * 32
OTHER_STREAM = "MZ" + "f" * 32
CALL = "CA" + "b" * 32
ACCOUNT = "AC" + "c" * 32

T = TypeVar("T")


class Clock:
    """Monotonic, injected time, kept in whole microseconds so that a playback model can be exact (the
    core itself sees seconds, ``now``). Every move is strictly forward."""

    def __init__(self, start: float = 1000.0) -> None:
        self.us = round(start * 1_000_000)

    @property
    def now(self) -> float:
        return self.us / 1_000_000

    def tick(self, seconds: float = 0.001) -> float:
        return self.to(self.us + round(seconds * 1_000_000))

    def to(self, us: int) -> float:
        """Move to ``us`` (microseconds), strictly later than now; the new ``now``."""
        assert us > self.us, "time moves strictly forward"
        self.us = us
        return self.now


READY = ev.SessionUpdated(ev.PCMU, ev.PCMU)  # the model confirms μ-law both ways


def b64(size: int, fill: int = 0x55) -> str:
    return base64.b64encode(bytes([fill]) * size).decode()


def decoded_size(payload: str) -> int:
    """The ground truth, by decoding (the code under test only counts)."""
    return len(base64.b64decode(payload, validate=True))


ANY_ATTEMPT: Any = ANY  # equal to any connect attempt id, for ``ConnectModel(ANY_ATTEMPT, purpose)``


def under_way(core: CallCore) -> int:
    """The id of the connect attempt under way: what the driver's reply names."""
    under_way = core._link._attempt
    assert under_way is not None, "no connect attempt is under way"
    return under_way


def log_lines(actions: Iterable[Action]) -> list[Log]:
    """The log lines the driver writes for ``actions``: plain ``Log`` lines and observations' (``log_line``)."""
    return [
        action if isinstance(action, Log) else log_line(action)
        for action in actions
        if isinstance(action, Log | Observation)
    ]


def of(actions: Iterable[Action], kind: type[T]) -> list[T]:
    return [action for action in actions if isinstance(action, kind)]


def commands(actions: Iterable[Action]) -> list[ev.ModelCommand]:
    return [action.command for action in of(actions, SendToModel)]


def ready_core(options: CallOptions, clock: Clock, *, stream: bool = True) -> CallCore:
    """A core with its model session configured and μ-law confirmed; the stream started if ``stream``."""
    core = CallCore(options, call_sid=CALL, now=clock.now)
    assert core.start(clock.tick()) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.FIRST)]
    connected = core.model_connected(under_way(core), clock.tick())
    assert connected[0] == UseNewModel() and commands(connected) == [ev.UpdateSession(options.session)]
    core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), clock.tick())
    if stream:
        core.transport_event(StreamStarted(), clock.tick())
    return core


# ---------------------------------------------------------------- Twilio frames, as ASGI messages


def text(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": json.dumps(frame)}


def connected_frame() -> dict[str, Any]:
    return text({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_frame(stream: str = STREAM) -> dict[str, Any]:
    start = {
        "accountSid": ACCOUNT,
        "callSid": CALL,
        "tracks": ["inbound"],
        "customParameters": {"token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return text({"event": "start", "sequenceNumber": "1", "streamSid": stream, "start": start})


def media_frame(payload: str, stream: str = STREAM) -> dict[str, Any]:
    media = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}
    return text({"event": "media", "sequenceNumber": "2", "streamSid": stream, "media": media})


def mark_frame(name: str, stream: str = STREAM) -> dict[str, Any]:
    return text({"event": "mark", "sequenceNumber": "3", "streamSid": stream, "mark": {"name": name}})


def dtmf_frame(digit: str, stream: str = STREAM) -> dict[str, Any]:
    dtmf = {"track": "inbound_track", "digit": digit}
    return text({"event": "dtmf", "sequenceNumber": "4", "streamSid": stream, "dtmf": dtmf})


def stop_frame(stream: str = STREAM) -> dict[str, Any]:
    stop = {"accountSid": ACCOUNT, "callSid": CALL}
    return text({"event": "stop", "sequenceNumber": "5", "streamSid": stream, "stop": stop})
