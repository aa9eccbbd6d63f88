"""The call's named phases and the moves between them (in the manner of h11's ``_state.py``): one enum per
concern, each with a declared table of the moves it may make. A move not in its table is a bug in the core
(or a driver that broke the contract) and raises ``CallCoreError`` instead of carrying on in a state
nobody designed."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, auto
from typing import TypeVar

__all__ = [
    "CALL_MOVES",
    "GOODBYE_PHASES",
    "MODEL_MOVES",
    "RESPONSE_MOVES",
    "CallCoreError",
    "CallPhase",
    "ModelPhase",
    "ResponsePhase",
    "checked_move",
]


class CallCoreError(RuntimeError):
    """The call core was driven against its contract: an illegal phase change, or a reply for a connect
    attempt that is not under way."""


class CallPhase(Enum):
    AWAITING_STREAM = auto()  # pre-warmed from the webhook: the caller's stream has not started
    IN_CALL = auto()
    GOODBYE_PENDING = auto()  # the call must end: waiting for a moment to ask the model for a goodbye
    GOODBYE_REQUESTED = auto()  # response.create for the goodbye sent
    GOODBYE_SPEAKING = auto()  # the goodbye response is under way; end once it has been heard
    ENDED = auto()


class ModelPhase(Enum):
    CONNECTING = auto()  # a connect is under way and no session is usable
    RETRY_WAIT = auto()  # the last attempt failed (or connects are rate-limited); the next is due at a deadline
    CONFIGURING = auto()  # connected, session.update sent, waiting for session.updated
    READY = auto()  # μ-law confirmed both ways


class ResponsePhase(Enum):
    """The model's response in flight (docs/protocol.md §2, "Responses: one at a time")."""

    NONE = auto()  # nothing active: a response may be asked for
    REQUESTED = auto()  # response.create sent, response.created not yet seen
    IN_PROGRESS = auto()  # ours, or the server's own after a caller turn, until its response.done


GOODBYE_PHASES = frozenset({CallPhase.GOODBYE_PENDING, CallPhase.GOODBYE_REQUESTED, CallPhase.GOODBYE_SPEAKING})

_C = CallPhase
CALL_MOVES: Mapping[CallPhase, frozenset[CallPhase]] = {
    _C.AWAITING_STREAM: frozenset({_C.IN_CALL, _C.ENDED}),
    _C.IN_CALL: frozenset({_C.GOODBYE_PENDING, _C.GOODBYE_SPEAKING, _C.ENDED}),  # speaking: the agent closes
    _C.GOODBYE_PENDING: frozenset({_C.GOODBYE_REQUESTED, _C.ENDED}),
    # a new model session is asked for the goodbye again
    _C.GOODBYE_REQUESTED: frozenset({_C.GOODBYE_SPEAKING, _C.GOODBYE_PENDING, _C.ENDED}),
    _C.GOODBYE_SPEAKING: frozenset({_C.GOODBYE_PENDING, _C.ENDED}),
    _C.ENDED: frozenset(),
}

_M = ModelPhase
MODEL_MOVES: Mapping[ModelPhase, frozenset[ModelPhase]] = {
    _M.CONNECTING: frozenset({_M.CONNECTING, _M.CONFIGURING, _M.RETRY_WAIT}),  # CONNECTING: the first connect
    _M.RETRY_WAIT: frozenset({_M.CONNECTING, _M.RETRY_WAIT}),  # RETRY_WAIT: the retry was rate-limited
    _M.CONFIGURING: frozenset({_M.READY, _M.CONNECTING}),
    _M.READY: frozenset({_M.CONFIGURING, _M.CONNECTING}),  # CONFIGURING: a recycle swapped sessions
}

_R = ResponsePhase
RESPONSE_MOVES: Mapping[ResponsePhase, frozenset[ResponsePhase]] = {
    _R.NONE: frozenset({_R.REQUESTED, _R.IN_PROGRESS}),  # IN_PROGRESS: the server answers a caller turn
    _R.REQUESTED: frozenset({_R.IN_PROGRESS, _R.NONE}),  # NONE: refused, or the session is gone
    _R.IN_PROGRESS: frozenset({_R.IN_PROGRESS, _R.NONE}),  # IN_PROGRESS: a created we did not see end
}

P = TypeVar("P", CallPhase, ModelPhase, ResponsePhase)


def checked_move(moves: Mapping[P, frozenset[P]], current: P, target: P) -> P:
    """``target``, if ``moves`` lets ``current`` go there; else raise ``CallCoreError``."""
    if target not in moves[current]:
        raise CallCoreError(f"illegal phase change: {current.name} -> {target.name}")
    return target
