"""Whole calls through the real app (uvicorn on loopback) against the fake Twilio caller and the fake
Realtime server, in both dialects.

Everything is measured against the fakes' own accounting — bytes sent, bytes played, marks echoed —
never against wall-clock deadlines; waits have generous timeouts.
"""

from __future__ import annotations

import pytest

from voiceagent.testing.audio import FIXTURE_TEXTS, load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import app_environment, serve_app

GREETING = load_fixture("agent_greeting")
WAIT = 60.0  # generous: a loaded 2-core machine may be slow, but never this slow


def fully_played(caller: FakeTwilioCaller, length: int):
    return lambda: len(caller.played) >= length and not caller.pending_marks


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_a_whole_call_greeting_turn_barge_in_and_transcripts(dialect):
    async with FakeRealtimeServer(chunk_ms=10, speed=4.0) as model:
        async with serve_app(app_environment(model.endpoint, dialect=dialect)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            async with caller:
                assert await caller.dial(), caller.refusal
                [session] = model.sessions
                assert session.dialect == dialect

                # 1. the greeting is heard, whole and unchanged
                await caller.wait_until(fully_played(caller, len(GREETING)), timeout=WAIT)
                assert bytes(caller.played[: len(GREETING)]) == GREETING

                # 2. the caller asks; the model answers with the long reply
                await caller.say("caller_book_table")
                reply_start = len(caller.played)
                await caller.wait_until(lambda: len(caller.played) >= reply_start + 2500 * 8, timeout=WAIT)

                # 3. the caller talks over the reply: Twilio is cleared, the item truncated
                await caller.say("caller_interrupt")
                await model.wait_for(lambda: session.truncations, timeout=WAIT)
                await caller.wait_until(lambda: caller.clears, timeout=WAIT)
                item_id, audio_end_ms = session.truncations[0]
                reply = bytes(session.produced[item_id])
                heard = caller.clears[0].played_bytes - len(GREETING)
                assert abs(audio_end_ms - heard / 8) <= 40, (audio_end_ms, heard / 8)
                assert audio_end_ms * 8 <= len(reply)
                assert bytes(caller.played[len(GREETING) : len(GREETING) + heard]) == reply[:heard]

                # 4. the interruption is answered; the caller hears that answer to the end, then hangs up
                await model.wait_for(lambda: len(session.produced) >= 3, timeout=WAIT)
                answer_id = list(session.produced)[2]
                await model.wait_for(lambda: not session.response_live, timeout=WAIT)
                answer = bytes(session.produced[answer_id])
                await caller.wait_until(fully_played(caller, len(GREETING) + heard + len(answer)), timeout=WAIT)
                assert bytes(caller.played) == GREETING + reply[:heard] + answer
                await caller.hangup()

            await model.wait_for(lambda: session.closed, timeout=WAIT)
            assert bytes(session.audio_received) == bytes(caller.sent_audio)
            assert caller.violations == []
            assert model.violations == []
            assert model.self_violations == []

            lines = [(line.role, line.text, line.interrupted) for line in app.transcripts.lines]
            assert ("agent", FIXTURE_TEXTS["agent_greeting"], False) in lines
            assert ("caller", FIXTURE_TEXTS["caller_book_table"], False) in lines
            assert ("caller", FIXTURE_TEXTS["caller_interrupt"], False) in lines
            [cut] = [line for line in app.transcripts.lines if line.interrupted]
            assert cut.role == "agent" and cut.heard_ms == audio_end_ms and cut.text
            assert ("agent", FIXTURE_TEXTS["agent_goodbye"], False) in lines


async def test_without_a_greeting_the_agent_waits_for_the_caller():
    async with FakeRealtimeServer(speed=8.0) as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_GREETING="")) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            async with caller:
                assert await caller.dial()
                await caller.pause(1000)
                assert caller.received_audio == bytearray()
                await caller.say("caller_book_table")
                await caller.wait_until(lambda: len(caller.played) > 8000, timeout=WAIT)
                await caller.hangup()
            assert not [e for e in model.sessions[0].received if e.get("type") == "response.create"]


async def test_hanging_up_closes_the_model_session():
    async with FakeRealtimeServer() as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            async with caller:
                assert await caller.dial()
                await caller.wait_until(lambda: len(caller.played) > 800, timeout=WAIT)
                await caller.hangup()
            await model.wait_for(lambda: model.sessions[0].closed, timeout=10)
            await app_wait(app, lambda: not app.service.calls)


async def test_a_model_that_will_not_speak_ulaw_ends_the_call_instead_of_playing_static(caplog_json):
    async with FakeRealtimeServer(ignore_audio_format=True) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            async with caller:
                assert await caller.dial()
                await caller.wait_closed(timeout=WAIT)
            assert caller.closed_by_server
            assert caller.received_audio == bytearray()
    events = [line for line in caplog_json() if line.get("event") == "model_audio_format_refused"]
    assert events and events[0]["level"] == "error" and events[0]["call_sid"] == caller.call_sid


async def test_two_calls_at_once_keep_to_themselves():
    async with FakeRealtimeServer(speed=8.0) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            first = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token)
            second = FakeTwilioCaller(app.base_url, auth_token=app.settings.twilio_auth_token, from_number="+15559876543")
            async with first, second:
                assert await first.dial() and await second.dial()
                await first.wait_until(fully_played(first, len(GREETING)), timeout=WAIT)
                await second.wait_until(fully_played(second, len(GREETING)), timeout=WAIT)
                await first.say("caller_transfer")
                await model.wait_for(
                    lambda: any(line.role == "caller" for line in app.transcripts.lines), timeout=WAIT
                )
                await first.hangup()
                await second.hangup()
            by_call = {}
            for line in app.transcripts.lines:
                by_call.setdefault(line.call_sid, []).append((line.role, line.text))
            assert ("caller", FIXTURE_TEXTS["caller_transfer"]) in by_call[first.call_sid]
            assert all(role == "agent" for role, _ in by_call[second.call_sid])
            assert model.violations == [] and first.violations == [] and second.violations == []


async def app_wait(app, predicate, timeout: float = 10.0):
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
