"""Console sign-in: the operator token exchanged for a session cookie, and the checks every console
request passes (the session; for anything that changes state, the ``Origin``).

Sessions live in memory, one ``ConsoleSessions`` per app: a restart signs everyone out, which is the
safe direction. The cookie is ``HttpOnly`` and ``SameSite=Strict``, and ``Secure`` unless the page was
asked for by a loopback name (a browser on the same machine, where there is no TLS to insist on).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from voiceagent.limits import RateLimit

__all__ = ["COOKIE", "ConsoleSessions", "origin_allowed", "token_matches"]

COOKIE = "voiceagent_console"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 1000  # the oldest goes first past this: sign-ins cannot grow memory without bound
SIGN_INS_PER_MINUTE = 10  # per client address: guessing a long token this way is hopeless anyway
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def token_matches(given: str, token: str) -> bool:
    """Constant time whatever the input (bytes: ``compare_digest`` on str wants ASCII)."""
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _host_name(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def on_loopback(connection: HTTPConnection) -> bool:
    """The browser asked for a loopback name: a cookie without ``Secure`` is all it can keep over http."""
    name = _host_name(connection.headers.get("host", ""))
    return name in LOOPBACK_NAMES or name == "::1"


def origin_allowed(connection: HTTPConnection, public_base_url: str | None) -> bool:
    """The request comes from a page of ours: its ``Origin`` names the host it was sent to (or the
    public base URL). Browsers send ``Origin`` on every POST and WebSocket upgrade; no ``Origin``, no."""
    origin = connection.headers.get("origin")
    if not origin or origin == "null":
        return False
    allowed: set[str] = {connection.headers.get("host", "").lower()}
    if public_base_url:
        allowed.add(urlsplit(public_base_url).netloc.lower())
    return urlsplit(origin).netloc.lower() in allowed - {""}


@dataclass
class ConsoleSessions:
    """Signed-in browsers: random session ids (never the token itself) and when each expires."""

    seconds: float = SESSION_SECONDS
    _expiry: dict[str, float] = field(default_factory=dict)
    _sign_ins: RateLimit = field(default_factory=lambda: RateLimit(SIGN_INS_PER_MINUTE))

    def may_try(self, client: str, now: float | None = None) -> bool:
        return self._sign_ins.allow(client, time.monotonic() if now is None else now)

    def open(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        self._expire(now)
        while len(self._expiry) >= MAX_SESSIONS:
            self._expiry.pop(next(iter(self._expiry)))
        session = secrets.token_urlsafe(32)
        self._expiry[session] = now + self.seconds
        return session

    def valid(self, session: str | None, now: float | None = None) -> bool:
        if not session:
            return False
        expires = self._expiry.get(session)
        return expires is not None and expires > (time.monotonic() if now is None else now)

    def close(self, session: str | None) -> None:
        if session:
            self._expiry.pop(session, None)

    def signed_in(self, connection: HTTPConnection) -> bool:
        return self.valid(connection.cookies.get(COOKIE))

    def _expire(self, now: float) -> None:
        for session in [s for s, expires in self._expiry.items() if expires <= now]:
            del self._expiry[session]

    def set_cookie(self, response: Response, session: str, connection: HTTPConnection) -> None:
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(self.seconds),
            path="/console",
            httponly=True,
            samesite="strict",
            secure=not on_loopback(connection),
        )

    @staticmethod
    def clear_cookie(response: Response, connection: HTTPConnection) -> None:
        response.delete_cookie(
            COOKIE, path="/console", httponly=True, samesite="strict", secure=not on_loopback(connection)
        )
