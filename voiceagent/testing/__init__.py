"""The voiceagent test kit: fakes of both ends of a call and the app between them, for end-to-end tests.

    from voiceagent.testing import (
        TEST_AUTH_TOKEN, FakeRealtimeServer, FakeTwilioCaller, app_environment, load_fixture, serve_app
    )

    async with FakeRealtimeServer(speed=8) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            async with FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN, speed=8) as caller:
                assert await caller.dial()
                await caller.wait_until(lambda: len(caller.played) >= len(load_fixture("agent_greeting")))

* ``FakeRealtimeServer``: the Realtime API (both dialects), one ``FakeModelSession`` per WebSocket.
* ``FakeTwilioCaller``: Twilio placing a call and running its Media Stream, at real time or ``speed`` × it;
  once the app ends the stream, the ``<Connect action>`` answer (``AfterStream``: ``Say``, ``Hangup``, ``Dial``).
* ``serve_app`` / ``app_environment`` / ``RunningApp``: the real app on a loopback port.
* ``wait_until``: the one bounded wait; the fakes' ``wait_for`` / ``wait_until`` use it. ``LoopLag``: how
  late the event loop ran, for latency tests on loaded machines.
* ``load_fixture`` / ``FIXTURE_TEXTS``: the bundled recordings and their words.
* ``validate_client_event`` / ``validate_server_event``: Realtime events against the ``openai`` types.

Needs the ``testing`` extra (the ``openai`` package, for its event types).
"""

from __future__ import annotations

from voiceagent.testing.audio import (
    BYTES_PER_MS,
    FIXTURE_TEXTS,
    FRAME_BYTES,
    FRAME_MS,
    SILENCE_BYTE,
    load_fixture,
    rms_dbfs,
    silence,
)
from voiceagent.testing.fake_realtime import FakeModelSession, FakeRealtimeServer, Rejection, SessionOptions
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_API_KEY, TEST_AUTH_TOKEN, RunningApp, app_environment, serve_app
from voiceagent.testing.twilio_dial import (
    AfterStream,
    Dial,
    Hangup,
    Say,
    StreamInstruction,
    TwimlRefused,
    parse_after_stream,
    parse_twiml,
    webhook_params,
)
from voiceagent.testing.twilio_wire import ClearRecord, EchoRecord, ProtocolViolation, new_sid
from voiceagent.testing.validation import validate_client_event, validate_server_event
from voiceagent.testing.waiting import LoopLag, wait_until

# --- seams: ManualClock, ScriptedModel, ScriptedModelConnection and MemoryTwilioSocket will be imported
# --- here from voiceagent.testing.seams (and listed in __all__ below) by its owner; nothing else goes here.

__all__ = [
    # the fakes
    "FakeRealtimeServer",
    "FakeModelSession",
    "SessionOptions",
    "Rejection",
    "FakeTwilioCaller",
    "ClearRecord",
    "EchoRecord",
    # the app under test
    "serve_app",
    "app_environment",
    "RunningApp",
    "TEST_AUTH_TOKEN",
    "TEST_API_KEY",
    # waiting
    "wait_until",
    "LoopLag",
    # audio
    "load_fixture",
    "FIXTURE_TEXTS",
    "silence",
    "rms_dbfs",
    "BYTES_PER_MS",
    "FRAME_MS",
    "FRAME_BYTES",
    "SILENCE_BYTE",
    # Twilio's side, for tests that forge requests or check TwiML
    "new_sid",
    "webhook_params",
    "parse_twiml",
    "StreamInstruction",
    "TwimlRefused",
    "ProtocolViolation",
    "AfterStream",
    "Say",
    "Hangup",
    "Dial",
    "parse_after_stream",
    # validation
    "validate_client_event",
    "validate_server_event",
    # seams (added by the owner of voiceagent.testing.seams):
]
