"""The call's named phases (in the manner of h11's ``_state.py``): one enum per concern, no flag soup."""

from __future__ import annotations

from enum import Enum, auto

__all__ = ["GOODBYE_PHASES", "CallPhase", "ModelPhase"]


class CallPhase(Enum):
    AWAITING_STREAM = auto()  # pre-warmed from the webhook: the caller's stream has not started
    IN_CALL = auto()
    GOODBYE_PENDING = auto()  # the call must end: waiting for a moment to ask the model for a goodbye
    GOODBYE_REQUESTED = auto()  # response.create for the goodbye sent
    GOODBYE_SPEAKING = auto()  # the goodbye response is under way; hang up once it has been heard
    ENDED = auto()


class ModelPhase(Enum):
    CONNECTING = auto()  # a connect is under way and no session is usable
    RETRY_WAIT = auto()  # the last attempt failed; the next is due at a deadline
    CONFIGURING = auto()  # connected, session.update sent, waiting for session.updated
    READY = auto()  # μ-law confirmed both ways


GOODBYE_PHASES = frozenset({CallPhase.GOODBYE_PENDING, CallPhase.GOODBYE_REQUESTED, CallPhase.GOODBYE_SPEAKING})
