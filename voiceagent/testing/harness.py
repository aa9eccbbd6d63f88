"""Run the real voiceagent app in-process for tests: a uvicorn server on a loopback port, in the
test's own event loop, pointed at a fake (or real) Realtime endpoint.

    async with FakeRealtimeServer() as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            await caller.dial()
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from voiceagent.app import create_app
from voiceagent.config import Settings, load_settings
from voiceagent.server import uvicorn_config
from voiceagent.service import Service
from voiceagent.testing.serving import base_url_of, loopback_socket, serve_asgi
from voiceagent.transcripts import FanoutSink, LogTranscriptSink, MemoryTranscriptSink

TEST_AUTH_TOKEN = "test-twilio-auth-token-0123456789"
TEST_API_KEY = "test-key"
PREVIEW_API_VERSION = "2025-04-01-preview"  # the preview protocol is deprecated; GA is the default


def app_environment(model_endpoint: str, *, dialect: str = "ga", **overrides: str) -> dict[str, str]:
    """Environment variables for an app talking to a fake Realtime server at ``model_endpoint``.

    Tests run fakes faster than real time and place many calls from one number, so the guards against
    that (``VOICEAGENT_CALLER_AUDIO_PACE``, the per-number and per-process call budgets) are opened
    wide here; pass ``overrides`` to test them."""
    env = {
        "AZURE_OPENAI_ENDPOINT": model_endpoint,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        "AZURE_OPENAI_API_KEY": TEST_API_KEY,
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "VOICEAGENT_GREETING": "Thank you for calling the Riverside Bistro. How can I help you today?",
        "VOICEAGENT_CALLER_AUDIO_PACE": "32",
        "VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE": "100000",
        "VOICEAGENT_MODEL_CONNECTS_PER_MINUTE": "100000",
    }
    if dialect == "preview":
        env["AZURE_OPENAI_API_VERSION"] = PREVIEW_API_VERSION
    env.update(overrides)
    return env


@dataclass
class RunningApp:
    app: Starlette
    settings: Settings
    base_url: str
    transcripts: MemoryTranscriptSink

    @property
    def service(self) -> Service:
        service: Service = self.app.state.service
        return service


@contextlib.asynccontextmanager
async def serve_app(env: Mapping[str, str], *, credential: Any = None) -> AsyncIterator[RunningApp]:
    """Serve the app built from ``env`` on 127.0.0.1 (PUBLIC_BASE_URL is set to that address unless
    given); transcripts are logged and also kept in ``transcripts``. ``credential``: an
    ``azure.identity.aio``-style credential for Entra ID (when ``env`` has no API key)."""
    sock = loopback_socket()
    base_url = base_url_of(sock)
    scratch = tempfile.TemporaryDirectory(prefix="voiceagent-test-")
    # ``env`` alone, never the developer's environment: a shell that loaded voiceagent.env must not make a
    # test write to the real store or post to the real webhook. Records go to a throwaway SQLite file
    # unless the test names a store.
    store = f"sqlite:///{scratch.name}/voiceagent.db"
    settings = load_settings({"PUBLIC_BASE_URL": base_url, "VOICEAGENT_DATABASE_URL": store, **env})
    memory = MemoryTranscriptSink()
    app = create_app(settings, credential=credential, sink=FanoutSink(LogTranscriptSink(), memory))
    try:
        async with serve_asgi(app, config=uvicorn_config(app, settings, lifespan="on"), sock=sock):
            yield RunningApp(app, settings, base_url, memory)
    finally:
        scratch.cleanup()
