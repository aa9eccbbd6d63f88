"""Bounds on webhook requests, enforced before anything parses them (or checks their signature).

Twilio posts small ``application/x-www-form-urlencoded`` forms (a few KB). Anything else — another
content type, a body over ``MAX_BODY_BYTES``, a body that trickles in slower than ``BODY_TIMEOUT_SECONDS``
— is refused with 415, 413 or 408 before a byte of it is parsed, so an unauthenticated client cannot
make the server buffer, spool or decode large inputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from voiceagent.logs import CallLog

__all__ = ["BODY_TIMEOUT_SECONDS", "MAX_BODY_BYTES", "WebhookGuard"]

MAX_BODY_BYTES = 16 * 1024
BODY_TIMEOUT_SECONDS = 10.0
FORM = b"application/x-www-form-urlencoded"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WebhookGuard:
    """ASGI middleware: POSTs under ``prefix`` must be small urlencoded forms, read in time."""

    def __init__(self, app: ASGIApp, prefix: str = "/twilio/") -> None:
        self._app = app
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].startswith(self._prefix):
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != FORM:
            await _refuse(send, 415, "Unsupported Media Type", "webhook content type is not a urlencoded form")
            return
        declared = headers.get(b"content-length", b"")
        if declared and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            await _refuse(send, 413, "Payload Too Large", "webhook body over the limit")
            return
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                body = await _read_body(receive)
        except TimeoutError:
            await _refuse(send, 408, "Request Timeout", "webhook body not received in time")
            return
        if body is None:
            await _refuse(send, 413, "Payload Too Large", "webhook body over the limit")
            return
        await self._app(scope, _replay(body), send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None once it grows over the limit (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _refuse(send: Send, status: int, phrase: str, reason: str) -> None:
    CallLog().warning("webhook_refused", status=status, reason=reason)
    body = phrase.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
