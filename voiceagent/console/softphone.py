"""The console's softphone: a browser speaking the Media Streams protocol to the service itself.

It is a real call in every respect but how it gets in. Instead of Twilio's signed webhook, the signed-in
page asks ``POST /console/phone`` for a call: admission decides as it does for the webhook (busy, rate)
and the model session is pre-warmed, exactly as for a phone call; the page gets a fresh CallSid. Then
instead of a signed upgrade, the page opens ``/console/phone/stream`` with its session cookie (and our
``Origin``) and sends ``connected`` and a ``start`` naming that CallSid. From there on it is the Twilio
media route's path: ``TwilioTransport`` around ``MediaStreamAdapter``, handed to the call's bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import assert_never

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from voiceagent.admission import Busy, CallAnswered, EndedEarly, RateLimited, Rejected, Replayed, StreamAccepted
from voiceagent.logs import CallLog
from voiceagent.service import Service
from voiceagent.twilio.media_stream import MediaStreamAdapter
from voiceagent.twilio.transport import TwilioTransport, wait_for_start

__all__ = ["SOFTPHONE_CALLER", "Softphone"]

START_TIMEOUT_SECONDS = 10.0
TICKET_SECONDS = 30.0  # from the page asking for a call to its stream's start
MAX_TICKETS = 100
SOFTPHONE_CALLER = "softphone"  # the admission's per-number rate key for every softphone call


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


@dataclass
class Softphone:
    """Calls the console asked for and whose stream has not started yet: CallSid -> (stream token, expiry)."""

    _tickets: OrderedDict[str, tuple[str, float]] = field(default_factory=OrderedDict)

    def place(self, service: Service) -> Response:
        """``POST /console/phone`` (the session and Origin already checked): a CallSid, or why not."""
        call_sid = new_call_sid()
        verdict = service.admission.webhook(call_sid, SOFTPHONE_CALLER, service.load())
        log = CallLog(call_sid)
        match verdict:
            case Busy(reason=reason) | RateLimited(reason=reason):
                log.warning("call_refused", reason=reason, at="softphone")
                return JSONResponse({"error": f"the line cannot take a call now ({reason})"}, status_code=503)
            case Replayed():  # a fresh random CallSid: cannot happen
                return JSONResponse({"error": "try again"}, status_code=503)
            case CallAnswered(token=token):
                log.info("call_incoming", caller=SOFTPHONE_CALLER)
                now = time.monotonic()
                self._forget_expired(now)
                self._tickets[call_sid] = (token, now + TICKET_SECONDS)
                service.prewarm(call_sid)
                return JSONResponse({"call_sid": call_sid}, status_code=201)
            case _:
                assert_never(verdict)

    def _forget_expired(self, now: float) -> None:
        while self._tickets and (len(self._tickets) >= MAX_TICKETS or next(iter(self._tickets.values()))[1] < now):
            self._tickets.popitem(last=False)

    def _take(self, call_sid: str) -> str | None:
        ticket = self._tickets.pop(call_sid, None)
        return ticket[0] if ticket is not None and ticket[1] >= time.monotonic() else None

    async def stream(self, websocket: WebSocket, service: Service) -> None:
        """The stream of a call ``place`` answered (the session and Origin already checked)."""
        log = CallLog()
        await websocket.accept()
        try:
            start = await asyncio.wait_for(wait_for_start(websocket, log), START_TIMEOUT_SECONDS)
        except TimeoutError:
            start = None
        token = None if start is None else self._take(start.call_sid)
        if start is None or token is None:
            log.warning("stream_rejected", reason="softphone: no start naming a call the console placed")
            await _close(websocket, 1008)
            return
        log = CallLog(start.call_sid)
        verdict = service.admission.stream(start.call_sid, token, service.status_of(start.call_sid), service.load())
        match verdict:
            case Rejected(reason=reason) | EndedEarly(reason=reason) | Busy(reason=reason):
                log.warning("stream_rejected", reason=reason, at="softphone")
                await _close(websocket, 1000)
                return
            case StreamAccepted():
                pass
            case _:
                assert_never(verdict)
        bridge = service.claim(start.call_sid, stream_sid=start.stream_sid)
        transport = TwilioTransport(websocket, MediaStreamAdapter(start))
        await bridge.run_stream(service.transport_for(bridge, transport))


async def _close(websocket: WebSocket, code: int) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code)
