"""The operator's console at ``/console``: static pages from the package, behind the operator token.

    GET  /console                 the console once signed in; else the sign-in page (nothing else)
    POST /console/session         form field ``token``: sets the session cookie, back to /console (the
                                  app bounds the form as it bounds Twilio's: ``WebhookGuard``)
    POST /console/logout          ends the session
    GET  /console/static/{name}   the page's files (all but the sign-in page's need the session)
    GET  /console/health          the line's health (``voiceagent.console.health``)
    *    /console/api/...         the operator API (``voiceagent.operator_api``) for the signed-in page
    POST /console/phone           the softphone asks for a call; WS /console/phone/stream carries it

Off (404) unless the operator API is on (``VOICEAGENT_API_TOKEN`` and call records). Every response
carries a strict Content-Security-Policy; every state-changing request, and the softphone's upgrade,
must come with our own ``Origin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from voiceagent.console.health import health
from voiceagent.console.session import COOKIE, ConsoleSessions, origin_allowed, token_matches
from voiceagent.console.softphone import Softphone
from voiceagent.logs import CallLog
from voiceagent.service import Service

__all__ = ["console_routes"]

STATIC = Path(__file__).parent / "static"
PUBLIC_FILES = frozenset({"signin.js", "console.css"})  # what the sign-in page needs, and nothing more
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: with it, form posts send "Origin: null"
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def _service(connection: HTTPConnection) -> Service:
    service: Service = connection.app.state.service
    return service


def _token(connection: HTTPConnection) -> str | None:
    """The operator token, when the console is on (the operator API is: a token and a store)."""
    service = _service(connection)
    records = service.records
    if records is None or records.api_token is None or service.recorder.store is None:
        return None
    return records.api_token


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _off() -> Response:
    return _secured(PlainTextResponse("the console is off: set VOICEAGENT_API_TOKEN (and keep call records on)", 404))


def _refused(status: int, message: str) -> Response:
    return _secured(JSONResponse({"error": message}, status_code=status))


def _page(name: str) -> Response:
    return _secured(FileResponse(STATIC / name, media_type="text/html"))


def _same_origin(connection: HTTPConnection) -> bool:
    return origin_allowed(connection, _service(connection).settings.public_base_url)


class _ConsoleApi:
    """``/console/api/...``: the operator API's own handlers, entered with the session instead of the
    bearer token (the request is passed on to ``/api/...`` with the token in its ``Authorization``), so
    that the console sees exactly what the API answers: the same 202, 409 and errors."""

    def __init__(self, sessions: ConsoleSessions) -> None:
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        token = _token(connection)
        refusal: Response | None = None
        if token is None:
            refusal = _off()
        elif not self._sessions.signed_in(connection):
            refusal = _refused(401, "sign in to the console first")
        elif scope["method"] not in ("GET", "HEAD") and not _same_origin(connection):
            refusal = _refused(403, "this request did not come from the console's own page (Origin)")
        if refusal is not None or token is None:
            await (refusal or _off())(scope, receive, send)
            return
        rest = str(scope["path_params"]["rest"])
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"cookie")]
        headers.append((b"authorization", f"Bearer {token}".encode()))
        path = f"/api/{rest}"
        inner = {**scope, "path": path, "raw_path": path.encode(), "root_path": "", "headers": headers}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await scope["app"].router(inner, receive, send_secured)


def console_routes() -> list[BaseRoute]:
    """The ``/console`` routes, with this app's own sign-in sessions and softphone tickets."""
    sessions = ConsoleSessions()
    softphone = Softphone()

    async def index(request: Request) -> Response:
        if _token(request) is None:
            return _off()
        return _page("console.html" if sessions.signed_in(request) else "signin.html")

    async def sign_in(request: Request) -> Response:
        token = _token(request)
        if token is None:
            return _off()
        if not _same_origin(request):
            return _refused(403, "sign in from the console's own page (Origin)")
        client = request.client.host if request.client else "unknown"
        if not sessions.may_try(client):
            CallLog().warning("console_sign_in_refused", reason="too many attempts", client=client)
            return _refused(429, "too many sign-in attempts; wait a minute")
        form = await request.form(max_files=0, max_fields=4)
        given = form.get("token")
        if not isinstance(given, str) or not token_matches(given, token):
            CallLog().warning("console_sign_in_failed", client=client)
            return _secured(RedirectResponse("/console?wrong", status_code=303))
        response = _secured(RedirectResponse("/console", status_code=303))
        sessions.set_cookie(response, sessions.open(), request)
        CallLog().info("console_signed_in", client=client)
        return response

    async def sign_out(request: Request) -> Response:
        if not _same_origin(request):
            return _refused(403, "sign out from the console's own page (Origin)")
        sessions.close(request.cookies.get(COOKIE))
        response = _secured(RedirectResponse("/console", status_code=303))
        sessions.clear_cookie(response, request)
        return response

    async def static(request: Request) -> Response:
        name = str(request.path_params["name"])
        path = STATIC / name
        if _token(request) is None or "/" in name or not path.is_file():
            return _refused(404, "no such file")
        if name not in PUBLIC_FILES and not sessions.signed_in(request):
            return _refused(401, "sign in to the console first")
        return _secured(FileResponse(path))

    async def line_health(request: Request) -> Response:
        if _token(request) is None:
            return _off()
        if not sessions.signed_in(request):
            return _refused(401, "sign in to the console first")
        return _secured(JSONResponse(await health(_service(request))))

    async def place_call(request: Request) -> Response:
        if _token(request) is None:
            return _off()
        if not sessions.signed_in(request):
            return _refused(401, "sign in to the console first")
        if not _same_origin(request):
            return _refused(403, "this request did not come from the console's own page (Origin)")
        return _secured(softphone.place(_service(request)))

    async def phone_stream(websocket: WebSocket) -> None:
        if _token(websocket) is None or not sessions.signed_in(websocket) or not _same_origin(websocket):
            CallLog().warning("stream_rejected", reason="softphone: no console session, or a foreign Origin")
            await websocket.close(code=1008)
            return
        await softphone.stream(websocket, _service(websocket))

    api: Any = _ConsoleApi(sessions)
    return [
        Route("/console", index, methods=["GET"]),
        Route("/console/session", sign_in, methods=["POST"]),
        Route("/console/logout", sign_out, methods=["POST"]),
        Route("/console/static/{name}", static, methods=["GET"]),
        Route("/console/health", line_health, methods=["GET"]),
        Route("/console/phone", place_call, methods=["POST"]),
        WebSocketRoute("/console/phone/stream", phone_stream),
        Route("/console/api/{rest:path}", api, methods=["GET", "POST"]),
    ]
