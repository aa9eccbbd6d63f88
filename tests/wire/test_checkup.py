"""``voiceagent check``: a real round trip to the model, and what it tells a newcomer for each way the
model can refuse. The fake Realtime server produces what it can (a good session, a wrong key or token,
a model that ignores μ-law, a refused handshake); what it cannot (an unknown deployment, a refused
api-version, a refused voice, a missing transcription deployment) comes from a few lines of scripted
server below, shaped like the real service's answers."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tests.helpers import environment_without_credentials, run_voiceagent
from voiceagent import checkup
from voiceagent.checkup import check_model, session_with_tools
from voiceagent.config import Settings, load_settings
from voiceagent.testing import FIXTURE_TEXTS, TEST_API_KEY, FakeRealtimeServer

TWILIO = {"TWILIO_AUTH_TOKEN": "t" * 32}


def settings_for(endpoint: str, **env: str) -> Settings:
    return load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
            "AZURE_OPENAI_API_KEY": TEST_API_KEY,
            **TWILIO,
            **env,
        }
    )


async def check(settings: Settings, **options: Any) -> checkup.Report:
    return await check_model(settings, await session_with_tools(settings), **options)


# ---------------------------------------------------------------- against the fake Realtime server


@pytest.mark.parametrize("version", [None, "2025-04-01-preview"])
async def test_a_working_model_passes_every_step(version: str | None) -> None:
    async with FakeRealtimeServer(speed=16) as model:
        env = {"AZURE_OPENAI_API_VERSION": version} if version else {}
        report = await check(settings_for(model.endpoint, **env))
        assert report.ok, report.problems
        [session] = model.sessions
        assert session.dialect == ("preview" if version else "ga")
        assert model.violations == []
    notes = "\n".join(report.notes)
    assert "μ-law both ways" in notes
    assert FIXTURE_TEXTS["caller_book_table"] in notes  # heard and transcribed
    assert "answered in audio" in notes
    assert len(session.produced) == 1 and session.response_live is False  # one answer, cancelled at once


async def test_stopping_after_the_session_sends_no_audio() -> None:
    async with FakeRealtimeServer() as model:
        report = await check(settings_for(model.endpoint), speak=False)
        assert report.ok and len(model.sessions[0].audio_received) == 0


async def test_a_wrong_key_is_a_401_that_names_the_key_and_where_to_find_it() -> None:
    async with FakeRealtimeServer(api_key="the-real-key") as model:
        report = await check(settings_for(model.endpoint))
    [problem] = report.problems
    assert problem.startswith("AZURE_OPENAI_API_KEY was refused (HTTP 401)") and "Keys and Endpoint" in problem
    assert TEST_API_KEY not in problem


class Token:
    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2_000_000_000)


async def test_a_refused_entra_token_names_the_role() -> None:
    async with FakeRealtimeServer(api_key=None, bearer_tokens=["good-token"]) as model:
        settings = settings_for(model.endpoint, AZURE_OPENAI_API_KEY="")
        assert settings.model.api_key is None
        refused = await check(settings, credential=Token("stale-token"))
        accepted = await check(settings, credential=Token("good-token"))
    [problem] = refused.problems
    assert "Entra ID token was refused (HTTP 401)" in problem and "Cognitive Services OpenAI User" in problem
    assert accepted.ok, accepted.problems


async def test_a_model_that_ignores_ulaw_is_caught_before_any_call() -> None:
    async with FakeRealtimeServer(ignore_audio_format=True) as model:
        report = await check(settings_for(model.endpoint))
    [problem] = report.problems
    assert "did not take μ-law audio both ways" in problem and "static" in problem


async def test_a_failing_service_says_so() -> None:
    async with FakeRealtimeServer(refuse_next=1) as model:
        report = await check(settings_for(model.endpoint))
    [problem] = report.problems
    assert problem.startswith("the model service failed (HTTP 503)")


async def test_an_unreachable_endpoint_names_the_variable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = await check(settings_for(f"http://127.0.0.1:{port}"))
    [problem] = report.problems
    assert problem.startswith(f"could not reach the model at AZURE_OPENAI_ENDPOINT=http://127.0.0.1:{port}")


# ---------------------------------------------------------------- what the fake cannot produce: a scripted server

Handler = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]
PCMU = {"type": "audio/pcmu"}


@asynccontextmanager
async def scripted_model(
    *, status: int | None = None, body: str = "", on_event: Handler | None = None
) -> AsyncIterator[str]:
    """A Realtime endpoint that refuses the handshake with ``status`` and ``body``, or else sends
    ``session.created`` and hands every client event to ``on_event``."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        return None if status is None else connection.respond(HTTPStatus(status), body)

    async def session(connection: ServerConnection) -> None:
        await send(connection, {"type": "session.created", "session": {"type": "realtime"}})
        async for message in connection:
            if on_event is not None:
                await on_event(connection, json.loads(message))

    async with serve(session, "127.0.0.1", 0, process_request=process_request) as server:
        yield f"http://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"


async def send(connection: ServerConnection, event: dict[str, Any]) -> None:
    await connection.send(json.dumps({"event_id": "event_x", **event}))


def session_updated() -> dict[str, Any]:
    return {
        "type": "session.updated",
        "session": {"type": "realtime", "audio": {"input": {"format": PCMU}, "output": {"format": PCMU}}},
    }


async def test_an_unknown_deployment_is_a_404_that_names_the_deployment() -> None:
    body = '{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}'
    async with scripted_model(status=404, body=body) as endpoint:
        report = await check(settings_for(endpoint, AZURE_OPENAI_DEPLOYMENT="gpt-realtme"))
    [problem] = report.problems
    assert problem.startswith("no deployment named AZURE_OPENAI_DEPLOYMENT=gpt-realtme") and "Deployments" in problem
    assert "DeploymentNotFound" in problem  # the server's own words


async def test_a_refused_api_version_names_the_variable() -> None:
    body = '{"error":{"code":"404","message":"API version not supported"}}'
    async with scripted_model(status=400, body=body) as endpoint:
        report = await check(settings_for(endpoint, AZURE_OPENAI_API_VERSION="2024-12-17-preview"))
    [problem] = report.problems
    assert problem.startswith("AZURE_OPENAI_API_VERSION=2024-12-17-preview was refused (HTTP 400)")
    assert "GA protocol" in problem


async def test_a_refused_voice_names_the_variable() -> None:
    async def refuse_voice(connection: ServerConnection, event: dict[str, Any]) -> None:
        if event["type"] == "session.update":
            message = "Invalid value: 'cedar'. Supported values are: 'alloy', 'ash', 'ballad', 'coral', 'echo'."
            error = {"type": "invalid_request_error", "code": "invalid_value", "message": message}
            param = "session.audio.output.voice"
            await send(connection, {"type": "error", "error": {**error, "param": param, "event_id": event["event_id"]}})

    async with scripted_model(on_event=refuse_voice) as endpoint:
        report = await check(settings_for(endpoint, VOICEAGENT_VOICE="cedar"))
    [problem] = report.problems
    assert problem.startswith("VOICEAGENT_VOICE=cedar was refused by this deployment")
    assert "Supported values are" in problem


async def test_a_missing_transcription_deployment_names_the_variable_and_the_rest_still_works() -> None:
    audio = base64.b64encode(bytes([0xFF]) * 160).decode()
    said = asyncio.Event()

    async def no_whisper(connection: ServerConnection, event: dict[str, Any]) -> None:
        if event["type"] == "session.update":
            await send(connection, session_updated())
        elif event["type"] == "input_audio_buffer.append" and not said.is_set():
            said.set()
            item = {"item_id": "item_1"}
            await send(connection, {"type": "input_audio_buffer.speech_started", **item, "audio_start_ms": 0})
            await send(connection, {"type": "input_audio_buffer.speech_stopped", **item, "audio_end_ms": 3000})
            error = {"type": "invalid_request_error", "code": "DeploymentNotFound", "message": "deployment not found"}
            failed = "conversation.item.input_audio_transcription.failed"
            await send(connection, {"type": failed, **item, "content_index": 0, "error": error})
            await send(connection, {"type": "response.created", "response": {"id": "resp_1"}})
            delta = {"response_id": "resp_1", "item_id": "item_2", "output_index": 0, "content_index": 0}
            await send(connection, {"type": "response.output_audio.delta", **delta, "delta": audio})

    async with scripted_model(on_event=no_whisper) as endpoint:
        report = await check(settings_for(endpoint, VOICEAGENT_TRANSCRIPTION_MODEL="whisper-1"))
    [problem] = report.problems
    assert problem.startswith("caller transcription failed: deployment not found")
    assert "VOICEAGENT_TRANSCRIPTION_MODEL=whisper-1 must name a transcription deployment" in problem
    assert any("answered in audio" in note for note in report.notes)


async def test_a_model_that_never_confirms_the_session_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkup, "CONFIRM_SECONDS", 0.5)
    async with scripted_model() as endpoint:  # takes the session.update, never answers
        report = await check(settings_for(endpoint, VOICEAGENT_SESSION_READY_SECONDS="0.5"), speak=False)
    [problem] = report.problems
    assert "did not confirm the session within 1 s (no session.updated)" in problem


# ---------------------------------------------------------------- the command


async def run_check_command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_voiceagent("check", *args, env=environment_without_credentials(**env), timeout=60)


async def test_the_command_exits_0_when_all_is_well_and_1_naming_the_problem_otherwise() -> None:
    async with FakeRealtimeServer(speed=16) as model:
        env = {
            "AZURE_OPENAI_ENDPOINT": model.endpoint,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
            "AZURE_OPENAI_API_KEY": TEST_API_KEY,
            **TWILIO,
        }
        good = await run_check_command(env)
        bad = await run_check_command({**env, "AZURE_OPENAI_API_KEY": "not-the-key"}, "--no-speech")
    code, stdout, stderr = good
    assert code == 0, stdout + stderr
    assert "configuration OK" in stdout and "All good" in stdout
    code, stdout, stderr = bad
    assert code == 1, stdout + stderr
    assert "PROBLEM: AZURE_OPENAI_API_KEY was refused (HTTP 401)" in stdout
    assert "not-the-key" not in stdout + stderr


class NoIdentity:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.identity import CredentialUnavailableError

        raise CredentialUnavailableError(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n"
            "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable.\n"
            "To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/…"
        )


async def test_no_key_and_no_identity_is_one_line_naming_both_ways_out() -> None:
    async with FakeRealtimeServer(api_key=None, bearer_tokens=["good-token"]) as model:
        report = await check(settings_for(model.endpoint, AZURE_OPENAI_API_KEY=""), credential=NoIdentity())
    [problem] = report.problems
    assert "\n" not in problem and "Attempted credentials" not in problem
    assert "set AZURE_OPENAI_API_KEY" in problem and "az login" in problem and "managed identity" in problem
    assert model.connection_attempts == 0  # nothing reached the model
