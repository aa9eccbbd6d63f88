"""What a transport tells the call core, in the core's own words.

A transport is whatever carries the caller's audio: a Twilio Media Stream today, a SIP/RTP leg or a
browser tomorrow. Its adapter owns the wire (stream ids, mark names, message shapes) and reports only
these facts, so the core never learns which transport it is talking to.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BadInput",
    "CallerAudio",
    "CallerHungUp",
    "Digit",
    "PlayedUpTo",
    "StreamStarted",
    "TransportEvent",
]


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The caller's audio path is up: agent audio can be played from now on."""


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """A chunk of the caller's audio, in the transport's encoding (base64), forwarded untouched."""

    payload: str
    size: int  # bytes the payload decodes to


@dataclass(frozen=True, slots=True)
class PlayedUpTo:
    """The caller has heard agent item ``item_id`` up to byte ``offset`` (or it was cleared there)."""

    item_id: str
    offset: int


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The transport ended: the caller hung up or the stream closed."""

    detail: str = "caller hung up"


@dataclass(frozen=True, slots=True)
class Digit:
    """The caller pressed a key. A secret in the making (PINs, card numbers): never log it in clear."""

    digit: str


@dataclass(frozen=True, slots=True)
class BadInput:
    """Something arrived that the transport could not make sense of; counted toward a limit."""

    reason: str


TransportEvent = StreamStarted | CallerAudio | PlayedUpTo | CallerHungUp | Digit | BadInput
