"""The Twilio Media Stream as a ``Transport``: the starlette WebSocket's I/O around ``MediaStreamAdapter``.

Everything ASGI-shaped stays here: waiting for the stream's ``start``, reading ``websocket.receive`` /
``websocket.disconnect`` messages, sending text frames, closing. The driver sees only
``voiceagent.call.transport.Transport``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from voiceagent.call.actions import ClearPlayback, PlayAudio
from voiceagent.call.inputs import CallerHungUp, TransportEvent
from voiceagent.logs import CallLog
from voiceagent.outbox import Outbox
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter

__all__ = ["MAX_MESSAGES_BEFORE_START", "TwilioSocket", "TwilioTransport", "wait_for_start"]

MAX_MESSAGES_BEFORE_START = 20
AsgiMessage = Any  # starlette's ``Message``: a mapping with a "type" and the frame's "text" or "bytes"


class TwilioSocket(Protocol):
    """The part of a starlette ``WebSocket`` the stream uses."""

    async def receive(self) -> AsgiMessage: ...
    async def send_text(self, data: str) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


async def wait_for_start(websocket: TwilioSocket, log: CallLog) -> tw.Start | None:
    """The stream's ``start`` message, or None if the socket closed or sent too much else first."""
    for _ in range(MAX_MESSAGES_BEFORE_START):
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        try:
            event = tw.parse_received(message)
        except tw.BadMessage as exc:
            log.warning("twilio_bad_message", reason=str(exc))
            continue
        if isinstance(event, tw.Start):
            return event
        if not isinstance(event, tw.Connected):
            log.warning("twilio_before_start", message=type(event).__name__)
    return None


class TwilioTransport:
    """One Twilio Media Stream, from its ``start`` on, as the driver's ``Transport[AsgiMessage]``."""

    def __init__(self, websocket: TwilioSocket, adapter: MediaStreamAdapter) -> None:
        self._websocket = websocket
        self._adapter = adapter
        self._out: Outbox[str] = Outbox(websocket.send_text, peer="twilio")
        # the socket's and the outbox's own coroutines, not wrappers: nothing added per frame
        self.receive: Callable[[], Coroutine[Any, Any, AsgiMessage]] = websocket.receive
        self.flush: Callable[[], Coroutine[Any, Any, None]] = self._out.flush

    @property
    def stream_id(self) -> str:
        return self._adapter.stream_sid

    def decode(self, frame: AsgiMessage) -> TransportEvent | None:
        if frame["type"] == "websocket.disconnect":
            return CallerHungUp("caller hung up (stream closed)")
        return self._adapter.receive(frame)

    def play(self, action: PlayAudio | ClearPlayback) -> None:
        for frame in self._adapter.send(action):
            self._out.put(frame)

    async def close(self) -> None:
        await self._websocket.close(code=1000)
