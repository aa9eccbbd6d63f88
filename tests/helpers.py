"""What the end-to-end tests share: the app between the two fakes, and a few predicates.

Plain functions and async context managers (pytest fixtures would have to live in conftest.py to be
shared): ``async with call_stack(...) as stack:`` then ``async with stack.caller() as caller:``.

Speeds: a call runs at ``FAST`` (the caller's media clock asked for 16× real time; a loaded machine gets
less, which slows the test but changes no number in it) wherever the property under test is about
bytes, marks and order, which the fakes account in emulated time. A few smoke tests run
at ``REAL_TIME`` where the property is about latency (how close a truncation lands to what was really
heard). The fake model generates ``MODEL_LEAD`` times faster than the caller listens, as the real one
does, so a reply is often complete while the caller is still hearing it. The app's own timers (silence
limit, recycle interval, session caps, drain) are wall-clock at any speed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Sample

from voiceagent.testing import (
    TEST_AUTH_TOKEN,
    FakeModelSession,
    FakeRealtimeServer,
    FakeTwilioCaller,
    RunningApp,
    app_environment,
    load_fixture,
    serve_app,
)

WAIT = 60.0  # generous: a loaded 2-core machine may be slow, but never this slow
FAST = 16.0
REAL_TIME = 1.0
MODEL_LEAD = 4.0
GREETING = load_fixture("agent_greeting")


@dataclass
class Stack:
    """The fake model, the app talking to it, and the speed its callers run at."""

    model: FakeRealtimeServer
    app: RunningApp
    speed: float

    def caller(self, **options: Any) -> FakeTwilioCaller:
        """A fake Twilio caller for this app, signing with the test auth token, at the stack's speed."""
        return FakeTwilioCaller(self.app.base_url, **{"auth_token": TEST_AUTH_TOKEN, "speed": self.speed, **options})


@contextlib.asynccontextmanager
async def call_stack(
    speed: float = FAST,
    *,
    model_speed: float | None = None,
    dialect: str = "ga",
    env: Mapping[str, str | None] | None = None,
    credential: Any = None,
    **model_options: Any,
) -> AsyncIterator[Stack]:
    """A ``FakeRealtimeServer(**model_options)`` generating at ``model_speed`` (default: ``MODEL_LEAD``
    times the callers' ``speed``) and the app serving it, in ``dialect``; ``env`` overrides
    ``app_environment`` (a ``None`` value removes the variable)."""
    model_speed = MODEL_LEAD * speed if model_speed is None else model_speed
    async with FakeRealtimeServer(speed=model_speed, **model_options) as model:
        environment = app_environment(model.endpoint, dialect=dialect)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        async with serve_app(environment, credential=credential) as app:
            yield Stack(model, app, speed)


def heard_in_full(caller: FakeTwilioCaller, length: int) -> Callable[[], bool]:
    """True once ``length`` bytes have been played, every mark echoed and no audio is waiting for its mark
    (the mark after the last media message may still be on the wire when its audio has played)."""
    return lambda: len(caller.played) >= length and not caller.pending_marks and not caller.unmarked_bytes


def slipped_before_the_clear(caller: FakeTwilioCaller) -> float:
    """Media time (ms) the caller's clock lost between the last playback report before its first clear and
    that clear. The app assumes Twilio plays in real time, so a clock that slipped (a starved event loop)
    lets the app's estimate of what was heard run ahead of what was played by at most this."""
    clear = caller.clears[0]
    last_report = max((echo.media_ms for echo in caller.echoes if echo.media_ms <= clear.media_ms), default=0)
    return caller.slipped_ms(last_report)


def played_more_than(caller: FakeTwilioCaller, length: int) -> Callable[[], bool]:
    return lambda: len(caller.played) > length


async def answered(caller: FakeTwilioCaller, fixture: str) -> None:
    """The caller says ``fixture`` and hears over a second of an answer (the call carries on)."""
    heard_before = len(caller.played)
    await caller.say(fixture)
    await caller.wait_until(played_more_than(caller, heard_before + 8000), timeout=WAIT)


def event_types(received: list[Any], kind: str) -> list[dict[str, Any]]:
    """The client events of ``kind`` a model session received."""
    return [event for event in received if isinstance(event, dict) and event.get("type") == kind]


def audio_deltas(session: FakeModelSession, item_id: str) -> list[bytes]:
    """The audio of each delta a model session sent for ``item_id``, in order."""
    kind = session.spec.audio_delta
    return [base64.b64decode(e["delta"]) for e in session.sent if e["type"] == kind and e["item_id"] == item_id]


def samples(metric: MetricWrapperBase) -> list[Sample]:
    """A metric's samples, over all its labels (one metric family per prometheus_client metric)."""
    [family] = metric.collect()
    return family.samples


def total(counter: MetricWrapperBase) -> float:
    """A counter's value, summed over its labels."""
    return sum(s.value for s in samples(counter) if s.name.endswith("_total"))


def environment_without_credentials(**extra: str) -> dict[str, str]:
    """This process's environment less every variable that configures the service or names a real
    account (so a developer's shell never points a subprocess at real services), plus ``extra``."""
    own = ("AZURE_", "OPENAI_", "TWILIO_", "VOICEAGENT_", "PUBLIC_BASE_URL")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(own)}, **extra}


async def run_voiceagent(*args: str, env: Mapping[str, str], timeout: float = WAIT) -> tuple[int, str, str]:
    """``python -m voiceagent ARGS`` in ``env``: its exit code, stdout and stderr (killed after ``timeout``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voiceagent",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
