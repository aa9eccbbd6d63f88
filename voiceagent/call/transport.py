"""What the driver needs of a caller's transport: frames in, playback out, one close.

A transport is whatever carries the caller's audio (a Twilio Media Stream today; a SIP/RTP leg or a
browser tomorrow). The driver (``voiceagent.bridge``) sees only this protocol, so it never learns which
transport it talks to, and a decorator (``voiceagent.recordings``) can wrap any of them.

Receiving comes in two halves, the I/O and the pure translation, so that the driver's read loop costs
nothing over reading the socket itself (no coroutine in between, 50 frames a second per call): the
driver awaits ``receive()`` for the next frame and asks ``decode(frame)`` what it means. Frames are
opaque to the driver; ``Frame`` is whatever the transport's I/O hands over (an ASGI message for Twilio).

Playback is queued synchronously by ``play``, in the order the core decided it, and sent by ``flush``,
one sender at a time: a ``clear`` can never overtake the ``media`` decided before it.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from voiceagent.call.actions import ClearPlayback, PlayAudio
from voiceagent.call.inputs import TransportEvent

__all__ = ["Frame", "Transport"]

Frame = TypeVar("Frame")


class Transport(Protocol[Frame]):
    """One caller's stream, from the moment it started (the driver reports ``StreamStarted`` itself)."""

    @property
    def stream_id(self) -> str:
        """The transport's name for this stream (Twilio's StreamSid), for the logs."""
        ...

    async def receive(self) -> Frame:
        """Wait for the next frame from the caller's side, as the transport's I/O gives it."""
        ...

    def decode(self, frame: Frame) -> TransportEvent | None:
        """What a frame means to the core (``CallerHungUp`` once the stream closed), or None for a frame
        that means nothing (keep-alives, echoes a clear made void). Pure."""
        ...

    def play(self, action: PlayAudio | ClearPlayback) -> None:
        """Queue audio for the caller, or the clearing of what is still queued; sent by ``flush``."""
        ...

    async def flush(self) -> None:
        """Send what ``play`` queued, in order. A peer already gone is no error here: ``receive`` says so."""
        ...

    async def close(self) -> None:
        """Close the stream (the call is over); what ``flush`` sent before is delivered first."""
        ...
