"""The model connection: URLs, authentication headers, and a real WebSocket to a small fake server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from voiceagent.realtime.connection import ENTRA_SCOPE, ModelConnectError, ModelConnection, auth_headers, realtime_url
from voiceagent.realtime.events import (
    AppendAudio,
    AudioDelta,
    CancelResponse,
    Ignored,
    ModelEvent,
    SessionConfig,
    SessionUpdated,
    UpdateSession,
)
from voiceagent.realtime.target import ModelTarget
from voiceagent.testing.validation import validate_client_event, validate_server_event

WAIT = 10.0
KEY = "sk-very-secret-key-0123456789"
PREVIEW = "2025-04-01-preview"
SESSION_CREATED = {
    "type": "session.created",
    "event_id": "event_0",
    "session": {"type": "realtime", "model": "gpt-realtime"},
}
SESSION_UPDATED = {
    "type": "session.updated",
    "event_id": "event_1",
    "session": {
        "type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}},
    },
}
SERVER_LOGGER = "tests.fake_model"  # the fake's own debug log shows our headers; it is not ours to scrub


def azure(
    endpoint: str = "https://res.openai.azure.com",
    *,
    key: str | None = KEY,
    version: str | None = None,
    deployment: str = "gpt-realtime",
) -> ModelTarget:
    return ModelTarget(provider="azure", endpoint=endpoint, deployment=deployment, api_key=key, api_version=version)


def openai(endpoint: str = "https://api.openai.com", *, version: str | None = None) -> ModelTarget:
    return ModelTarget(
        provider="openai", endpoint=endpoint, deployment="gpt-realtime", api_key=KEY, api_version=version
    )


class FakeCredential:
    """An ``AsyncTokenCredential`` handing out a new token on every call."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.fail = fail

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise RuntimeError("no identity available here")
        return AccessToken(f"entra-token-{len(self.scopes)}-secret", 4_000_000_000)

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("target", "url"),
    [
        (azure(), "wss://res.openai.azure.com/openai/v1/realtime?model=gpt-realtime"),
        (
            azure(version=PREVIEW),
            f"wss://res.openai.azure.com/openai/realtime?api-version={PREVIEW}&deployment=gpt-realtime",
        ),
        (
            azure(version="2024-10-01-preview", deployment="rt"),
            "wss://res.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=rt",
        ),
        (openai(), "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
        (openai(version="2024-10-01"), "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
        (openai("https://api.openai.com/v1"), "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
        (openai("http://127.0.0.1:8765"), "ws://127.0.0.1:8765/v1/realtime?model=gpt-realtime"),
        (azure("http://localhost:9000"), "ws://localhost:9000/openai/v1/realtime?model=gpt-realtime"),
        (
            azure("https://res.cognitiveservices.azure.com:8443"),
            "wss://res.cognitiveservices.azure.com:8443/openai/v1/realtime?model=gpt-realtime",
        ),
        (
            azure("https://res.openai.azure.com/openai"),
            "wss://res.openai.azure.com/openai/v1/realtime?model=gpt-realtime",
        ),
        (
            azure("https://res.openai.azure.com/openai/v1/"),
            "wss://res.openai.azure.com/openai/v1/realtime?model=gpt-realtime",
        ),
        (azure("https://gw.example.com/team-a"), "wss://gw.example.com/team-a/openai/v1/realtime?model=gpt-realtime"),
        (
            azure(deployment="my rt/dep&x=1"),
            "wss://res.openai.azure.com/openai/v1/realtime?model=my%20rt%2Fdep%26x%3D1",
        ),
        (
            azure(version="v 1&x", deployment="d?"),
            "wss://res.openai.azure.com/openai/realtime?api-version=v%201%26x&deployment=d%3F",
        ),
        (
            azure("https://user:pw@res.openai.azure.com"),
            "wss://res.openai.azure.com/openai/v1/realtime?model=gpt-realtime",
        ),
    ],
)
def test_realtime_url(target: ModelTarget, url: str) -> None:
    assert realtime_url(target) == url


def test_ga_url_never_has_an_api_version() -> None:
    assert "api-version" not in realtime_url(azure())


@pytest.mark.parametrize("endpoint", ["ftp://res.openai.azure.com", "res.openai.azure.com", "https://"])
def test_a_bad_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError):
        realtime_url(azure(endpoint))


# ---------------------------------------------------------------- headers


async def test_azure_api_key_header() -> None:
    assert await auth_headers(azure(), None) == {"api-key": KEY}
    assert await auth_headers(azure(version=PREVIEW), FakeCredential()) == {"api-key": KEY}  # the key wins


async def test_azure_entra_token_is_fresh_every_call() -> None:
    credential = FakeCredential()
    first = await auth_headers(azure(key=None), credential)
    second = await auth_headers(azure(key=None, version=PREVIEW), credential)
    assert first == {"Authorization": "Bearer entra-token-1-secret"}
    assert second == {"Authorization": "Bearer entra-token-2-secret"}
    assert credential.scopes == [(ENTRA_SCOPE,), (ENTRA_SCOPE,)]


async def test_azure_without_key_or_credential_is_an_error() -> None:
    with pytest.raises(ModelConnectError, match="credential"):
        await auth_headers(azure(key=None), None)


async def test_a_failing_credential_is_a_connect_error() -> None:
    with pytest.raises(ModelConnectError, match="no identity available"):
        await auth_headers(azure(key=None), FakeCredential(fail=True))


async def test_openai_headers_and_the_beta_header_rule() -> None:
    assert await auth_headers(openai(), None) == {"Authorization": f"Bearer {KEY}"}  # GA: no OpenAI-Beta
    assert await auth_headers(openai(version="2024-10-01"), None) == {
        "Authorization": f"Bearer {KEY}",
        "OpenAI-Beta": "realtime=v1",
    }
    assert "OpenAI-Beta" not in await auth_headers(azure(version=PREVIEW), None)  # preview on Azure: none either


async def test_openai_without_a_key_is_an_error() -> None:
    target = ModelTarget(provider="openai", endpoint="https://api.openai.com", deployment="gpt-realtime")
    with pytest.raises(ModelConnectError):
        await auth_headers(target, None)


# ---------------------------------------------------------------- a fake model server

Behaviour = Callable[[ServerConnection, "FakeModel"], Awaitable[None]]


async def greet_then_echo(ws: ServerConnection, fake: FakeModel) -> None:
    """Send session.created; answer each session.update with session.updated; record everything."""
    await ws.send(json.dumps(SESSION_CREATED))
    async for message in ws:
        assert isinstance(message, str), "the client sends text frames"
        await fake.received.put(message)
        if json.loads(message).get("type") == "session.update":
            await ws.send(json.dumps(SESSION_UPDATED))


class FakeModel:
    """Records handshakes and messages; rejects with ``reject`` (status, body) if given."""

    def __init__(self, behaviour: Behaviour = greet_then_echo, reject: tuple[int, str] | None = None) -> None:
        self.behaviour = behaviour
        self.reject = reject
        self.requests: list[Request] = []
        self.received: asyncio.Queue[str] = asyncio.Queue()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.reject is not None:
            return connection.respond(*self.reject)
        return None

    async def handler(self, ws: ServerConnection) -> None:
        await self.behaviour(ws, self)

    async def next_received(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.received.get(), WAIT))
        return event


@asynccontextmanager
async def running(fake: FakeModel) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 at an ephemeral port; yield its http:// endpoint."""
    async with serve(
        fake.handler, "127.0.0.1", 0, process_request=fake.process_request, logger=logging.getLogger(SERVER_LOGGER)
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def next_event(connection: ModelConnection) -> ModelEvent:
    return await asyncio.wait_for(anext(aiter(connection)), WAIT)


async def collect(connection: ModelConnection) -> list[ModelEvent]:
    async def drain() -> list[ModelEvent]:
        return [event async for event in connection]

    return await asyncio.wait_for(drain(), WAIT)


# ---------------------------------------------------------------- open, send, receive


async def test_open_checks_path_and_headers_and_talks_ga() -> None:
    fake = FakeModel()
    async with running(fake) as endpoint:
        connection = await ModelConnection.open(azure(endpoint), timeout=WAIT)
        try:
            assert connection.dialect.name == "ga"
            assert await next_event(connection) == Ignored("session.created")
            await connection.send(UpdateSession(SessionConfig(instructions="Be brief.", voice="alloy")))
            update = await fake.next_received()
            assert update["type"] == "session.update" and validate_client_event("ga", update) == []
            assert await next_event(connection) == SessionUpdated("pcmu", "pcmu")
            await connection.send(AppendAudio("//79/A=="))
            append = await fake.next_received()
            assert append["audio"] == "//79/A==" and append["event_id"] != update["event_id"]
        finally:
            await connection.close()
    (request,) = fake.requests
    assert request.path == "/openai/v1/realtime?model=gpt-realtime"
    assert request.headers["api-key"] == KEY
    assert "OpenAI-Beta" not in request.headers and "Authorization" not in request.headers


async def test_open_preview_with_entra_token() -> None:
    fake = FakeModel()
    credential = FakeCredential()
    async with running(fake) as endpoint:
        for _ in range(2):
            connection = await ModelConnection.open(
                azure(endpoint, key=None, version=PREVIEW), credential=credential, timeout=WAIT
            )
            assert connection.dialect.name == "preview"
            await connection.send(CancelResponse())
            sent = await fake.next_received()
            assert sent["type"] == "response.cancel" and validate_client_event("preview", sent) == []
            await connection.close()
    assert [r.path for r in fake.requests] == [f"/openai/realtime?api-version={PREVIEW}&deployment=gpt-realtime"] * 2
    assert [r.headers["Authorization"] for r in fake.requests] == [
        "Bearer entra-token-1-secret",
        "Bearer entra-token-2-secret",
    ]
    assert all("api-key" not in r.headers for r in fake.requests)


async def test_openai_preview_sends_the_beta_header() -> None:
    fake = FakeModel()
    async with running(fake) as endpoint:
        connection = await ModelConnection.open(openai(endpoint, version="2024-10-01"), timeout=WAIT)
        await connection.close()
        ga = await ModelConnection.open(openai(endpoint), timeout=WAIT)
        await ga.close()
    preview_request, ga_request = fake.requests
    assert preview_request.path == "/v1/realtime?model=gpt-realtime"
    assert preview_request.headers["OpenAI-Beta"] == "realtime=v1"
    assert preview_request.headers["Authorization"] == f"Bearer {KEY}"
    assert "OpenAI-Beta" not in ga_request.headers


async def test_frames_that_are_not_json_events_are_skipped() -> None:
    async def noisy(ws: ServerConnection, fake: FakeModel) -> None:
        await ws.send("this is not JSON")
        await ws.send(b"\x00\x01binary")
        delta = {
            "type": "response.output_audio.delta",
            "event_id": "e",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "content_index": 0,
            "delta": "AAAA",
        }
        assert validate_server_event("ga", delta) == []
        await ws.send(json.dumps(delta))
        await ws.send(json.dumps({"type": "rate_limits.updated", "event_id": "e2", "rate_limits": []}))
        await ws.close()

    async with running(FakeModel(noisy)) as endpoint:
        connection = await ModelConnection.open(azure(endpoint), timeout=WAIT)
        events = await collect(connection)
    assert events == [AudioDelta("r", "i", "AAAA"), Ignored("rate_limits.updated")]
    assert connection.close_code == 1000


# ---------------------------------------------------------------- closing


async def test_server_close_1001_is_reported() -> None:
    reason = "Your session hit the maximum duration of 60 minutes."

    async def session_cap(ws: ServerConnection, fake: FakeModel) -> None:
        await ws.send(json.dumps(SESSION_CREATED))
        await ws.close(1001, reason)

    async with running(FakeModel(session_cap)) as endpoint:
        connection = await ModelConnection.open(azure(endpoint), timeout=WAIT)
        assert (connection.close_code, connection.close_reason) == (None, None)
        assert await collect(connection) == [Ignored("session.created")]
        assert (connection.close_code, connection.close_reason) == (1001, reason)
        await connection.send(AppendAudio("AAAA"))  # after the close: dropped, not raised
        await connection.close()
    assert "closed 1001" in repr(connection)


async def test_close_is_idempotent_and_ends_iteration() -> None:
    fake = FakeModel()
    async with running(fake) as endpoint:
        connection = await ModelConnection.open(azure(endpoint), timeout=WAIT)
        assert await next_event(connection) == Ignored("session.created")
        await connection.close()
        await connection.close()
        assert await collect(connection) == []
        await connection.send(AppendAudio("AAAA"))
        assert connection.close_code == 1000
        await asyncio.gather(connection.close(), connection.close())


# ---------------------------------------------------------------- failures and secrets


@pytest.mark.parametrize(
    ("status", "body"), [(401, "Access denied: invalid key " + KEY), (403, "Forbidden"), (404, "DeploymentNotFound")]
)
async def test_rejected_handshake_raises_without_secrets(status: int, body: str) -> None:
    async with running(FakeModel(reject=(status, body))) as endpoint:
        with pytest.raises(ModelConnectError) as caught:
            await ModelConnection.open(azure(endpoint), timeout=WAIT)
    error = caught.value
    assert error.status == status
    assert f"HTTP {status}" in str(error)
    assert KEY not in str(error) and KEY not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__


async def test_rejected_entra_handshake_hides_the_token() -> None:
    async def echo_auth(ws: ServerConnection, fake: FakeModel) -> None:  # never reached
        raise AssertionError

    fake = FakeModel(echo_auth, reject=(401, "bad token: entra-token-1-secret"))
    async with running(fake) as endpoint:
        with pytest.raises(ModelConnectError) as caught:
            await ModelConnection.open(azure(endpoint, key=None), credential=FakeCredential(), timeout=WAIT)
    assert caught.value.status == 401
    assert "entra-token-1-secret" not in str(caught.value)
    assert "bad token: ***" in str(caught.value)


async def test_refused_connection_raises_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelConnectError) as caught:
        await ModelConnection.open(azure(f"http://127.0.0.1:{port}"), timeout=WAIT)
    assert caught.value.status is None
    assert KEY not in str(caught.value)


async def test_handshake_timeout_raises_connect_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ModelConnectError, match="timed out") as caught:
            await ModelConnection.open(azure(f"http://127.0.0.1:{port}"), timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.status is None


async def test_bad_endpoint_is_a_connect_error() -> None:
    with pytest.raises(ModelConnectError):
        await ModelConnection.open(azure("ftp://example.com"), timeout=WAIT)


async def test_secrets_stay_out_of_logs_and_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeModel()
    async with running(fake) as endpoint:
        connection = await ModelConnection.open(azure(endpoint), timeout=WAIT)
        assert await next_event(connection) == Ignored("session.created")
        await connection.close()
    async with running(FakeModel(reject=(401, "invalid key " + KEY))) as endpoint:
        with pytest.raises(ModelConnectError):
            await ModelConnection.open(azure(endpoint), timeout=WAIT)
    ours = [r for r in caplog.records if not r.name.startswith(SERVER_LOGGER)]
    text = "\n".join(r.getMessage() for r in ours)
    assert "api-key: ***" in text  # websockets did log the handshake, scrubbed
    assert KEY not in text
    assert KEY not in repr(connection) and KEY not in repr(azure())


async def test_entra_bearer_is_scrubbed_from_the_handshake_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(FakeModel()) as endpoint:
        connection = await ModelConnection.open(azure(endpoint, key=None), credential=FakeCredential(), timeout=WAIT)
        await connection.close()
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(SERVER_LOGGER))
    assert "Authorization: ***" in text
    assert "entra-token" not in text
