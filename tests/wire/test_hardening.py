"""What an attacker, a broken peer and a bad day do to the running service, and what holds.

Every request here goes to the app in-process or on loopback; every loop is bounded."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator

from voiceagent.app import create_app
from voiceagent.call import EndCall, EndReason
from voiceagent.config import load_settings
from voiceagent.logs import configure_logging
from voiceagent.server import MAX_HEAD_BYTES, uvicorn_config
from voiceagent.service import ENDED_MEMORY_SECONDS, Service
from voiceagent.testing import TEST_AUTH_TOKEN, app_environment, webhook_params
from voiceagent.testing.seams import ScriptedModel
from voiceagent.twilio import webhook_guard
from voiceagent.twilio.security import StreamTokens

BASE = "http://voice.test"
CALLER = "+15551234567"


def call_params(call_sid: str, caller: str = CALLER) -> dict[str, str]:
    return webhook_params(account_sid="AC" + "c" * 32, call_sid=call_sid, from_number=caller, to_number="+15557654321")


def sid(n: int) -> str:
    return "CA" + f"{n:032x}"


def signature(url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params))


def post_webhook(http: TestClient, params: dict[str, str], path: str = "/twilio/voice") -> Any:
    headers = {"X-Twilio-Signature": signature(BASE + path, params)}
    return http.post(path, data=params, headers=headers)


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
def app_client(model: ScriptedModel) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: str) -> TestClient:
        env = app_environment("http://127.0.0.1:9", PUBLIC_BASE_URL=BASE, **overrides)
        client = TestClient(create_app(load_settings(env), connector=model), base_url=BASE)
        clients.append(client)
        return client.__enter__()

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# ---------------------------------------------------------------- 1. unauthenticated input, bounded


async def asgi_post(headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, stall: bool = False) -> int:
    """POST to the guard with a body in ``chunks`` (``stall``: then never finish); the status it sent."""
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending) or stall}
        await asyncio.sleep(3600)  # a slow-loris body: never more
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/twilio/voice", "headers": headers}
    await webhook_guard.WebhookGuard(app)(scope, receive, send)
    assert (sent[0]["status"] == 200) == bool(reached)  # refused requests never reach the app
    return int(sent[0]["status"])


FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


async def test_webhooks_that_are_not_small_urlencoded_forms_are_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await asgi_post(FORM, [b"CallSid=CA1"]) == 200
    assert await asgi_post([(b"content-type", b"multipart/form-data; boundary=x")], [b"--x--"]) == 415
    assert await asgi_post([], [b"CallSid=CA1"]) == 415
    big = webhook_guard.MAX_BODY_BYTES + 1
    assert await asgi_post([*FORM, (b"content-length", str(big).encode())], [b""]) == 413
    assert await asgi_post(FORM, [b"a" * 8192] * 3) == 413  # chunked, no length: counted as it comes
    monkeypatch.setattr(webhook_guard, "BODY_TIMEOUT_SECONDS", 0.05)
    assert await asgi_post(FORM, [b"CallSid="], stall=True) == 408


def test_an_oversized_request_head_is_refused_by_the_server_configuration() -> None:
    settings = load_settings(app_environment("http://127.0.0.1:9"))
    config = uvicorn_config(create_app(settings), settings)
    assert config.http == "h11" and config.h11_max_incomplete_event_size == MAX_HEAD_BYTES
    assert config.limit_concurrency is not None


# ---------------------------------------------------------------- 2. one webhook, one model session


def test_a_replayed_webhook_opens_exactly_one_model_session(
    app_client: Callable[..., TestClient], model: ScriptedModel
) -> None:
    http = app_client()
    params = call_params(sid(1))
    first = post_webhook(http, params)
    assert first.status_code == 200 and "<Stream" in first.text
    for _ in range(50):
        again = post_webhook(http, params)
        assert again.status_code == 200 and "<Stream" not in again.text and "token" not in again.text
    assert model.attempts == 1


def test_calls_per_number_and_model_connects_are_budgeted(
    app_client: Callable[..., TestClient], model: ScriptedModel
) -> None:
    http = app_client(VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE="2", VOICEAGENT_MODEL_CONNECTS_PER_MINUTE="3")
    answers = [post_webhook(http, call_params(sid(10 + n))).text for n in range(3)]
    assert ["<Stream" in answer for answer in answers] == [True, True, False]  # the third: busy
    others = [post_webhook(http, call_params(sid(20 + n), caller=f"+1555000000{n}")).text for n in range(3)]
    assert all("<Stream" in answer for answer in others)  # other numbers still get in
    assert model.attempts == 3  # the process budget bit: the fifth call's connect never went out


@given(st.text(max_size=60) | st.from_regex(r"[0-9²³¹٣]{1,5000}\.[A-Za-z0-9_-]{43}", fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_the_token_parser_refuses_anything_malformed_without_raising(token: str) -> None:
    tokens = StreamTokens(TEST_AUTH_TOKEN)
    assert tokens.check(token, sid(1), 0.0) is not None


def test_a_genuine_token_is_accepted_and_bound_to_its_call() -> None:
    tokens = StreamTokens(TEST_AUTH_TOKEN)
    token = tokens.issue(sid(1), 1000.0)
    assert tokens.check(token, sid(1), 1000.0) is None
    assert tokens.check(token, sid(2), 1000.0) == "stream token does not match this call"
    assert tokens.check(token, sid(1), 2000.0) == "stream token expired"


def start_message(call_sid: str, token: str) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ" + "1" * 32,
        "start": {"accountSid": "AC" + "c" * 32, "callSid": call_sid, "customParameters": {"token": token}},
    }


def open_stream(http: TestClient, call_sid: str, token: str) -> int | None:
    """Open a stream and send its start; the close code if the server closed it at once, else None."""
    stream_url = BASE.replace("http", "ws") + "/twilio/media"
    headers = {"X-Twilio-Signature": signature(stream_url, {})}
    with http.websocket_connect("/twilio/media", headers=headers) as socket:
        socket.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        socket.send_json(start_message(call_sid, token))
        try:
            message = socket.receive()
        except WebSocketDisconnect as closed:
            return closed.code
        return int(message["code"]) if message["type"] == "websocket.close" else None


def test_a_stream_token_works_once_and_a_stream_for_an_ended_call_is_refused(
    app_client: Callable[..., TestClient], caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    http = app_client()
    service = http.app.state.service  # type: ignore[attr-defined]
    token = service.tokens.issue(sid(3), service.now())
    service.remember_end(sid(4), EndCall(EndReason.CALLER_HUNG_UP, "caller hung up"))
    assert open_stream(http, sid(4), service.tokens.issue(sid(4), service.now())) == 1008  # already over
    service.admission.tokens_used.add(token, time.monotonic())  # as if a first stream had used it
    assert open_stream(http, sid(3), token) == 1008  # already used
    reasons = {line.get("reason") for line in caplog_json() if line["event"] == "stream_rejected"}
    assert reasons == {"this call already ended", "stream token already used"}


def test_a_days_call_ends_are_forgotten_once_nobody_can_ask_for_them() -> None:
    """The ends are kept for the <Connect action> and a transfer's <Dial action> (at most 600 s of ringing),
    not for the rest of the day: 10,000 of them were the soak's slow climb of memory."""
    clock = [0.0]
    service = Service(load_settings(app_environment("http://127.0.0.1:9")), monotonic=lambda: clock[0])
    for n in range(50):
        clock[0] = float(n)
        service.remember_end(sid(n), EndCall(EndReason.CALLER_HUNG_UP, "caller hung up", summary={"turns": 3}))
    assert service.end_of(sid(0)) == EndCall(EndReason.CALLER_HUNG_UP, "caller hung up")  # the action's answer
    assert service.end_of(sid(0)).summary == {}  # type: ignore[union-attr]  # the figures are the record's
    clock[0] = 60.0 + ENDED_MEMORY_SECONDS
    assert service.end_of(sid(49)) is None
    service.remember_end(sid(99), EndCall(EndReason.CALLER_HUNG_UP, "caller hung up"))
    assert len(service.ended) == 1


def test_streams_are_admitted_like_webhooks(app_client: Callable[..., TestClient]) -> None:
    http = app_client(VOICEAGENT_MAX_CALLS="1")
    assert "<Stream" in post_webhook(http, call_params(sid(5))).text  # the one call allowed (pre-warmed)
    service = http.app.state.service  # type: ignore[attr-defined]
    assert open_stream(http, sid(6), service.tokens.issue(sid(6), service.now())) == 1000
    ended = post_webhook(http, call_params(sid(6)) | {"CallStatus": "in-progress"}, "/twilio/stream-ended")
    assert service.settings.busy_message in ended.text


# ---------------------------------------------------------------- 9, 10. odd input, small leaks


def test_a_call_sid_with_a_trailing_newline_is_refused(app_client: Callable[..., TestClient]) -> None:
    http = app_client()
    assert post_webhook(http, call_params(sid(7) + "\n")).status_code == 400


def test_readyz_does_not_tell_how_many_calls_are_in_progress(app_client: Callable[..., TestClient]) -> None:
    assert app_client().get("/readyz").json() == {"status": "ready"}


def test_the_access_log_never_prints_a_query_string() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/healthz?From=%2B15551234567", "1.1", 200
    )
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert "15551234567" not in line["event"] and "/healthz" in line["event"]
