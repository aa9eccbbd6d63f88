"""Facts the core observed, returned beside its actions: what the driver logs (``log_line``) and what
records, metrics, live events and the operator API act on. Typed, so that renaming a log line changes
no metric, event or API answer. A small closed set: events nothing else consumes stay plain ``Log`` lines.

None of these is made on the hot path (a caller frame in, a model delta out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from voiceagent.call.endings import EndReason, Farewell

__all__ = [
    "Accepted",
    "AgentClosing",
    "BargeIn",
    "CallEnded",
    "ConnectFailed",
    "Observation",
    "OperatorAnswer",
    "OperatorInput",
    "ReasonDropped",
    "ReasonsAnswered",
    "Refused",
    "ResponseRefused",
    "ToolCalled",
    "ToolNotRun",
]

OperatorInput = Literal["operator_say", "operator_note"]


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The caller talked over agent item ``item_id``: it was cut where they were, ``heard_ms`` in."""

    item_id: str
    heard_ms: int
    produced_ms: int | None  # None: the item's model session is gone, there was nothing to truncate


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """One of the operator's tools answered (``error``: it failed)."""

    name: str
    ok: bool
    duration_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class AgentClosing:
    """The agent hung up or transferred (the built-in tools): the call ends once its words are heard."""

    farewell: Farewell


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A model connect failed, or a session died young: failure ``attempt`` in a row of at most ``of``."""

    attempt: int
    of: int
    error: str


@dataclass(frozen=True, slots=True)
class Refused:
    """An operator input the call cannot take in its phase (the operator API answers 409)."""

    request: OperatorInput
    phase: str  # the phase that refused it, lower case


@dataclass(frozen=True, slots=True)
class Accepted:
    """An operator input the call took."""


OperatorAnswer = Accepted | Refused
"""What an operator input answers, beside its actions."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over: why, in words, and its figures (the same summary as ``EndCall.summary``)."""

    reason: EndReason
    detail: str
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReasonsAnswered:
    """A response answers ``reasons`` (their kinds): asked for them (``by`` "request", ``attempt`` 2 for a
    retry), or the server's own response after a caller turn took them along (``by`` "caller_turn")."""

    reasons: tuple[str, ...]
    by: Literal["request", "caller_turn"]
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class ReasonDropped:
    """A reason to speak that no response will answer, and why (the call is ending, the model failed)."""

    reason: str
    why: str


@dataclass(frozen=True, slots=True)
class ResponseRefused:
    """The model refused a ``response.create`` (one was already active): a bug of ours, by construction."""

    message: str


@dataclass(frozen=True, slots=True)
class ToolNotRun:
    """A function call of a response that did not complete (``status``): not carried out."""

    name: str
    status: str


Observation = (
    BargeIn
    | ToolCalled
    | AgentClosing
    | ConnectFailed
    | Refused
    | CallEnded
    | ReasonsAnswered
    | ReasonDropped
    | ResponseRefused
    | ToolNotRun
)
