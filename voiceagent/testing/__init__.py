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
* ``serve_asgi`` / ``loopback_socket`` / ``base_url_of``: any ASGI app under uvicorn on a loopback port.
* The seams, for tests that run in milliseconds without sockets: ``ManualClock`` (injected time),
  ``ScriptedModel`` / ``ScriptedModelConnection`` / ``ModelStep`` (a model session that fails the test on
  a send it did not expect or a step left unconsumed), ``MemoryTwilioSocket`` (the caller's WebSocket).

Needs the ``testing`` extra (the ``openai`` package, for its event types). Each name is imported when
first used (PEP 562), so ``from voiceagent.testing import ManualClock`` costs milliseconds and never
loads ``openai`` (which the fakes and the validators need, at over a second).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    # the fakes
    "FakeRealtimeServer",
    "FakeModelSession",
    "SessionOptions",
    "Rejection",
    "FakeTwilioCaller",
    "ClearRecord",
    "EchoRecord",
    # the app under test, and any ASGI app on loopback
    "serve_app",
    "app_environment",
    "RunningApp",
    "TEST_AUTH_TOKEN",
    "TEST_API_KEY",
    "serve_asgi",
    "loopback_socket",
    "base_url_of",
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
    # the seams
    "ManualClock",
    "ScriptedModel",
    "ScriptedModelConnection",
    "ModelStep",
    "UnexpectedCommand",
    "MemoryTwilioSocket",
]

# The module of the kit each name of the front door lives in: it is imported on the name's first use.
_HOMES = {
    name: module
    for module, names in {
        "fake_realtime": ("FakeRealtimeServer", "FakeModelSession", "SessionOptions", "Rejection"),
        "fake_twilio": ("FakeTwilioCaller",),
        "twilio_wire": ("ClearRecord", "EchoRecord", "new_sid", "ProtocolViolation"),
        "harness": ("serve_app", "app_environment", "RunningApp", "TEST_AUTH_TOKEN", "TEST_API_KEY"),
        "serving": ("serve_asgi", "loopback_socket", "base_url_of"),
        "waiting": ("wait_until", "LoopLag"),
        "audio": (
            "load_fixture",
            "FIXTURE_TEXTS",
            "silence",
            "rms_dbfs",
            "BYTES_PER_MS",
            "FRAME_MS",
            "FRAME_BYTES",
            "SILENCE_BYTE",
        ),
        "twilio_dial": (
            "webhook_params",
            "parse_twiml",
            "StreamInstruction",
            "TwimlRefused",
            "AfterStream",
            "Say",
            "Hangup",
            "Dial",
            "parse_after_stream",
        ),
        "validation": ("validate_client_event", "validate_server_event"),
        "seams": (
            "ManualClock",
            "ScriptedModel",
            "ScriptedModelConnection",
            "ModelStep",
            "UnexpectedCommand",
            "MemoryTwilioSocket",
        ),
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    """Import a name of the front door from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
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
    from voiceagent.testing.seams import (
        ManualClock,
        MemoryTwilioSocket,
        ModelStep,
        ScriptedModel,
        ScriptedModelConnection,
        UnexpectedCommand,
    )
    from voiceagent.testing.serving import base_url_of, loopback_socket, serve_asgi
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
