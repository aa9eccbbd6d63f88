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

# Each module of the kit and the names of the front door it holds: a name's module is imported on its
# first use. (The imports under TYPE_CHECKING, below, say the same for type checkers.)
_MODULES: dict[str, tuple[str, ...]] = {
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
}
_HOMES = {name: module for module, names in _MODULES.items() for name in names}
__all__ = list(_HOMES)


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
        BYTES_PER_MS as BYTES_PER_MS,
    )
    from voiceagent.testing.audio import (
        FIXTURE_TEXTS as FIXTURE_TEXTS,
    )
    from voiceagent.testing.audio import (
        FRAME_BYTES as FRAME_BYTES,
    )
    from voiceagent.testing.audio import (
        FRAME_MS as FRAME_MS,
    )
    from voiceagent.testing.audio import (
        SILENCE_BYTE as SILENCE_BYTE,
    )
    from voiceagent.testing.audio import (
        load_fixture as load_fixture,
    )
    from voiceagent.testing.audio import (
        rms_dbfs as rms_dbfs,
    )
    from voiceagent.testing.audio import (
        silence as silence,
    )
    from voiceagent.testing.fake_realtime import (
        FakeModelSession as FakeModelSession,
    )
    from voiceagent.testing.fake_realtime import (
        FakeRealtimeServer as FakeRealtimeServer,
    )
    from voiceagent.testing.fake_realtime import (
        Rejection as Rejection,
    )
    from voiceagent.testing.fake_realtime import (
        SessionOptions as SessionOptions,
    )
    from voiceagent.testing.fake_twilio import FakeTwilioCaller as FakeTwilioCaller
    from voiceagent.testing.harness import (
        TEST_API_KEY as TEST_API_KEY,
    )
    from voiceagent.testing.harness import (
        TEST_AUTH_TOKEN as TEST_AUTH_TOKEN,
    )
    from voiceagent.testing.harness import (
        RunningApp as RunningApp,
    )
    from voiceagent.testing.harness import (
        app_environment as app_environment,
    )
    from voiceagent.testing.harness import (
        serve_app as serve_app,
    )
    from voiceagent.testing.seams import (
        ManualClock as ManualClock,
    )
    from voiceagent.testing.seams import (
        MemoryTwilioSocket as MemoryTwilioSocket,
    )
    from voiceagent.testing.seams import (
        ModelStep as ModelStep,
    )
    from voiceagent.testing.seams import (
        ScriptedModel as ScriptedModel,
    )
    from voiceagent.testing.seams import (
        ScriptedModelConnection as ScriptedModelConnection,
    )
    from voiceagent.testing.seams import (
        UnexpectedCommand as UnexpectedCommand,
    )
    from voiceagent.testing.serving import (
        base_url_of as base_url_of,
    )
    from voiceagent.testing.serving import (
        loopback_socket as loopback_socket,
    )
    from voiceagent.testing.serving import (
        serve_asgi as serve_asgi,
    )
    from voiceagent.testing.twilio_dial import (
        AfterStream as AfterStream,
    )
    from voiceagent.testing.twilio_dial import (
        Dial as Dial,
    )
    from voiceagent.testing.twilio_dial import (
        Hangup as Hangup,
    )
    from voiceagent.testing.twilio_dial import (
        Say as Say,
    )
    from voiceagent.testing.twilio_dial import (
        StreamInstruction as StreamInstruction,
    )
    from voiceagent.testing.twilio_dial import (
        TwimlRefused as TwimlRefused,
    )
    from voiceagent.testing.twilio_dial import (
        parse_after_stream as parse_after_stream,
    )
    from voiceagent.testing.twilio_dial import (
        parse_twiml as parse_twiml,
    )
    from voiceagent.testing.twilio_dial import (
        webhook_params as webhook_params,
    )
    from voiceagent.testing.twilio_wire import (
        ClearRecord as ClearRecord,
    )
    from voiceagent.testing.twilio_wire import (
        EchoRecord as EchoRecord,
    )
    from voiceagent.testing.twilio_wire import (
        ProtocolViolation as ProtocolViolation,
    )
    from voiceagent.testing.twilio_wire import (
        new_sid as new_sid,
    )
    from voiceagent.testing.validation import (
        validate_client_event as validate_client_event,
    )
    from voiceagent.testing.validation import (
        validate_server_event as validate_server_event,
    )
    from voiceagent.testing.waiting import LoopLag as LoopLag
    from voiceagent.testing.waiting import wait_until as wait_until
