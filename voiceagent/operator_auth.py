"""Who may use the operator API: ``Authorization: Bearer $VOICEAGENT_API_TOKEN``, compared in constant
time and never logged; a client that guesses wrong too often waits a minute. Errors are JSON
(``{"error": "…"}``), a store that is away a 503, never a traceback."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voiceagent.logs import CallLog
from voiceagent.service import Service
from voiceagent.store import StoreError

__all__ = ["Handler", "api_token", "check_token", "error", "protected", "service_of"]

Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def api_token(service: Service) -> str | None:
    records = service.records
    return records.api_token if records is not None else None


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest on bytes: constant time whatever the input (str needs ASCII)
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _unauthorized() -> JSONResponse:
    return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="voiceagent"'})


def check_token(request: Request, token: str) -> Response | None:
    """None when the request carries ``token``; otherwise the answer (401, or 429 for a client that has
    guessed wrong too often: see ``voiceagent.api_auth``)."""
    failures = service_of(request).failed_logins
    client = request.client.host if request.client is not None else "?"
    if failures.blocked(client):
        return error(429, "too many wrong tokens from this address; wait a minute", **{"Retry-After": "60"})
    if _bearer_ok(request, token):
        return None
    failures.failed(client, request.url.path)
    return _unauthorized()


def protected(handler: Handler) -> Handler:
    """The token check in front of every operator route."""

    async def checked(request: Request) -> Response:
        service = service_of(request)
        token = api_token(service)
        if token is None or service.recorder.store is None:
            return error(404, "the operator API is off: set VOICEAGENT_API_TOKEN (and keep call records on)")
        refused = check_token(request, token)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except StoreError as exc:  # a database that is away or hangs: say so, never a traceback
            CallLog().warning("operator_api_store_unavailable", path=request.url.path, error=str(exc))
            return error(503, f"the call records cannot be read right now: {exc}", **{"Retry-After": "5"})

    return checked
