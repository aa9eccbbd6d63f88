"""What the call core asks its driver to do. Plain data: the core decides, the driver carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voiceagent.realtime import events as ev
from voiceagent.twilio import messages as tw



@dataclass(frozen=True, slots=True)
class ToTwilio:
    message: tw.TwilioCommand


@dataclass(frozen=True, slots=True)
class ToModel:
    command: ev.ModelCommand


@dataclass(frozen=True, slots=True)
class Transcript:
    role: str  # "caller" | "agent"
    text: str
    interrupted: bool = False
    heard_ms: int | None = None  # agent lines: how much of the audio the caller heard
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # "info" | "warning" | "error"
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str


Action = ToTwilio | ToModel | Transcript | Log | EndCall
