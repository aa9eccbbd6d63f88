"""The console's pure parts: sign-in sessions, the Origin rule, the cookie's flags, and the quantiles the
health view estimates from /metrics' histogram buckets."""

from __future__ import annotations

import math

from starlette.requests import HTTPConnection
from starlette.responses import Response

from voiceagent.console.health import histogram_quantile
from voiceagent.console.session import MAX_SESSIONS, SIGN_INS_PER_MINUTE, ConsoleSessions, origin_allowed


def connection(**headers: str) -> HTTPConnection:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return HTTPConnection({"type": "http", "method": "GET", "path": "/console", "headers": raw, "query_string": b""})


def test_a_session_is_random_expires_and_ends_at_logout() -> None:
    sessions = ConsoleSessions(seconds=60)
    first, second = sessions.open(now=0), sessions.open(now=0)
    assert first != second and len(first) >= 40
    assert sessions.valid(first, now=59) and not sessions.valid(first, now=60)
    sessions.close(second)
    assert not sessions.valid(second, now=1)
    assert not sessions.valid(None) and not sessions.valid("")


def test_sessions_are_bounded_and_sign_ins_rate_limited() -> None:
    sessions = ConsoleSessions()
    opened = [sessions.open(now=0) for _ in range(MAX_SESSIONS + 1)]
    assert not sessions.valid(opened[0], now=1) and sessions.valid(opened[-1], now=1)
    tries = [sessions.may_try("10.0.0.1", now=0) for _ in range(SIGN_INS_PER_MINUTE + 1)]
    assert tries.count(True) == SIGN_INS_PER_MINUTE and not tries[-1]
    assert sessions.may_try("10.0.0.2", now=0) and sessions.may_try("10.0.0.1", now=61)


def test_only_our_own_origin_may_change_state() -> None:
    ours = "https://voice.example.com"
    assert origin_allowed(connection(host="voice.example.com", origin=ours), None)
    assert origin_allowed(connection(host="10.0.0.5:8080", origin=ours), ours)  # behind a proxy: PUBLIC_BASE_URL
    for origin in ("https://evil.example", "null", "https://voice.example.com.evil.example"):
        assert not origin_allowed(connection(host="voice.example.com", origin=origin), ours), origin
    assert not origin_allowed(connection(host="voice.example.com"), ours)  # no Origin at all


def test_the_cookie_is_http_only_strict_and_secure_off_loopback() -> None:
    sessions = ConsoleSessions()
    for host, secure in (
        ("127.0.0.1:8080", False),
        ("localhost", False),
        ("[::1]:8080", False),
        ("voice.example.com", True),
    ):
        response = Response()
        sessions.set_cookie(response, "abc", connection(host=host))
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert ("Secure" in cookie) is secure, host


def test_quantiles_are_interpolated_within_buckets_as_prometheus_does() -> None:
    buckets = [(0.1, 0.0), (0.25, 10.0), (0.5, 20.0), (math.inf, 20.0)]
    assert histogram_quantile(buckets, 0.5) == 0.25
    assert math.isclose(histogram_quantile(buckets, 0.25) or 0, 0.175)
    assert histogram_quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    assert histogram_quantile([(0.1, 0.0), (math.inf, 4.0)], 0.95) == 0.1  # past the last bound: that bound
