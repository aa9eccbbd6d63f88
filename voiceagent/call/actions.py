"""What the call core asks its driver to do. Plain data: the core decides, the driver carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.observations import Observation
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = [
    "Action",
    "ClearPlayback",
    "ConnectModel",
    "ConnectPurpose",
    "DropNewModel",
    "EndCall",
    "EndReason",
    "Farewell",
    "Log",
    "LogLevel",
    "PlayAudio",
    "RecordLine",
    "RunTool",
    "SendToModel",
    "UseNewModel",
]


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """Play agent audio to the caller. ``end`` is the byte offset in the item where this chunk ends:
    the transport reports ``PlayedUpTo(item_id, end)`` once the caller has heard it."""

    item_id: str
    payload: str  # base64, untouched from the model
    end: int


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Drop every bit of agent audio the transport has not played yet (barge-in)."""


@dataclass(frozen=True, slots=True)
class SendToModel:
    command: ev.ModelCommand


@dataclass(frozen=True, slots=True)
class RecordLine:
    """A finished utterance for the transcript (``item_id``: the agent item it is, for agent lines)."""

    line: TranscriptLine
    item_id: str | None = None


LogLevel = Literal["info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the call's log that nothing else consumes (facts others act on are observations)."""

    level: LogLevel
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


class ConnectPurpose(Enum):
    FIRST = "first"  # the call's first model session
    RECONNECT = "reconnect"  # the previous session is gone (dropped, capped, refused)
    RECYCLE = "recycle"  # replace a healthy session at a quiet moment, before the server's cap


@dataclass(frozen=True, slots=True)
class ConnectModel:
    """Open a new model session. For ``RECYCLE`` the current one stays in use until the new one is up.
    Answer with ``CallCore.model_connected(attempt, ...)`` or ``model_connect_failed(attempt, ...)``."""

    attempt: int  # this call's connect attempts are numbered 1, 2, 3, ...
    purpose: ConnectPurpose


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run one of the operator's tools; report back with ``CallCore.tool_finished(call_id, ...)``."""

    call_id: str
    name: str
    arguments: str  # JSON text from the model, unchecked


@dataclass(frozen=True, slots=True)
class UseNewModel:
    """Route model commands to the session that just opened from now on; close the one it replaces."""


@dataclass(frozen=True, slots=True)
class DropNewModel:
    """Close the session that just opened and keep the current one (a recycle that found the call busy)."""


@dataclass(frozen=True, slots=True)
class EndCall:
    """End the call, and what the caller hears after the stream."""

    reason: EndReason
    detail: str  # the end in words: records, logs (the metric label is ``reason``)
    farewell: Farewell = Farewell.HANG_UP
    transfer_to: str | None = None  # with Farewell.TRANSFER: a phone number or a SIP URI
    summary: dict[str, Any] = field(default_factory=dict, compare=False)  # the call's figures (call_ended)

    @property
    def model_unreachable(self) -> bool:
        return self.farewell is Farewell.UNAVAILABLE


Action = (
    PlayAudio
    | ClearPlayback
    | SendToModel
    | RecordLine
    | Log
    | ConnectModel
    | UseNewModel
    | DropNewModel
    | RunTool
    | EndCall
    | Observation
)
"""Everything the core returns: instructions for the driver, and observations (facts to log and count)."""
