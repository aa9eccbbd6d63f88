"""A fake of the one part of Twilio's REST API the service uses: updating a live call with new TwiML.

``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with ``Twiml=…`` (what the twilio SDK's
``client.calls(sid).update(twiml=…)`` sends), authenticated with HTTP Basic ``AccountSid:AuthToken``: the
call leaves its TwiML and runs the new document (``FakeTwilioCaller.update_twiml``), and the answer is
the call resource as JSON. A wrong account or token answers 401 (Twilio's error 20003), a call nobody
placed 404 (20404). Use as ``async with FakeTwilioRest(auth_token) as rest:`` and ``rest.place(caller)``;
``rest.url`` is what ``VOICEAGENT_TWILIO_API_URL`` points at; ``rest.updates`` records what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.serving import serve_asgi

__all__ = ["CallUpdate", "FakeTwilioRest"]

CALL_PATH = "/2010-04-01/Accounts/{account}/Calls/{call}.json"


@dataclass(frozen=True, slots=True)
class CallUpdate:
    call_sid: str
    twiml: str


class FakeTwilioRest:
    def __init__(self, auth_token: str) -> None:
        self._auth_token = auth_token
        self._calls: dict[str, FakeTwilioCaller] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.updates: list[CallUpdate] = []
        self.url = ""
        self._stack = AsyncExitStack()

    def place(self, caller: FakeTwilioCaller) -> FakeTwilioCaller:
        """``caller``'s call is one the REST API can update."""
        self._calls[caller.call_sid] = caller
        return caller

    async def __aenter__(self) -> FakeTwilioRest:
        app = Starlette(routes=[Route(CALL_PATH, self._update_call, methods=["POST"])])
        self.url = await self._stack.enter_async_context(serve_asgi(app))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._running:
            await asyncio.wait(set(self._running), timeout=5.0)
        await self._stack.aclose()

    def _authorised(self, request: Request, account: str) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return scheme.lower() == "basic" and user == account and password == self._auth_token

    async def _update_call(self, request: Request) -> JSONResponse:
        account, call_sid = request.path_params["account"], request.path_params["call"]
        caller = self._calls.get(call_sid)
        if not self._authorised(request, account) or (caller is not None and caller.account_sid != account):
            return _error(401, 20003, "Authenticate")
        if caller is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        form = await request.form()
        twiml = str(form.get("Twiml") or "")
        self.updates.append(CallUpdate(call_sid, twiml))
        task = asyncio.create_task(caller.update_twiml(twiml), name=f"twilio-call-update-{call_sid}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return JSONResponse(_call_resource(caller))


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "more_info": "", "status": status}, status_code=status)


def _call_resource(caller: FakeTwilioCaller) -> dict[str, Any]:
    return {
        "sid": caller.call_sid,
        "account_sid": caller.account_sid,
        "api_version": "2010-04-01",
        "direction": "inbound",
        "from": caller.from_number,
        "to": caller.to_number,
        "status": "in-progress",
        "uri": CALL_PATH.format(account=caller.account_sid, call=caller.call_sid).removeprefix("/2010-04-01"),
    }
