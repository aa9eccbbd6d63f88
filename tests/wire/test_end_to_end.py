"""Whole calls through the real app (uvicorn on loopback) against the fake Twilio caller and the fake
Realtime server, in both dialects.

Everything is measured against the fakes' own accounting — bytes sent, bytes played, marks echoed —
never against wall-clock deadlines; waits have generous timeouts. Most calls run at ``FAST``; one whole
call per dialect runs in real time, because how close a truncation lands to what the caller heard is a
matter of latency, and latency only means something at real-time pace.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import (
    FAST,
    GREETING,
    REAL_TIME,
    WAIT,
    call_stack,
    event_types,
    heard_in_full,
    played_more_than,
    slipped_before_the_clear,
)
from voiceagent.testing import FIXTURE_TEXTS, load_fixture


async def test_a_whole_call_in_each_dialect_in_real_time_truncates_where_the_caller_stopped_hearing() -> None:
    """The smoke test, one call per dialect (at the same time, each with its own app and model): the
    greeting, the caller talks over it, the answer is heard in full, the caller hangs up."""
    await asyncio.gather(whole_call_in_real_time("ga"), whole_call_in_real_time("preview"))


async def whole_call_in_real_time(dialect: str) -> None:
    async with call_stack(REAL_TIME, dialect=dialect, chunk_ms=10, replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial(), (dialect, caller.refusal)
            [session] = model.sessions
            assert session.dialect == dialect

            # the caller talks over the greeting after 0.8 s of it: Twilio is cleared, the item truncated
            # where the caller stopped hearing it (within a tick and a mark)
            await caller.wait_until(played_more_than(caller, 800 * 8), timeout=WAIT)
            await caller.say("caller_transfer")
            [(item_id, audio_end_ms)] = await model.wait_for(lambda: session.truncations, timeout=WAIT)
            [clear] = await caller.wait_until(lambda: caller.clears, timeout=WAIT)
            assert abs(audio_end_ms - clear.played_bytes / 8) <= 40, (dialect, audio_end_ms, clear.played_bytes / 8)
            assert bytes(caller.played[: clear.played_bytes]) == GREETING[: clear.played_bytes]

            # the interruption is answered; the caller hears that answer to the end, then hangs up
            await model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)
            answer = bytes(list(session.produced.values())[1])
            assert answer == load_fixture("agent_goodbye")
            await caller.wait_until(heard_in_full(caller, clear.played_bytes + len(answer)), timeout=WAIT)
            assert bytes(caller.played) == GREETING[: clear.played_bytes] + answer
            await caller.hangup()

        await model.wait_for(lambda: session.closed, timeout=WAIT)
        assert bytes(session.audio_received) == bytes(caller.sent_audio)
        assert caller.violations == [] and model.violations == [] and model.self_violations == []
        lines = [(line.role, line.text, line.interrupted) for line in app.transcripts.lines]
        assert ("caller", FIXTURE_TEXTS["caller_transfer"], False) in lines
        assert ("agent", FIXTURE_TEXTS["agent_goodbye"], False) in lines
        [cut] = [line for line in app.transcripts.lines if line.interrupted]
        assert cut.role == "agent" and cut.heard_ms == audio_end_ms and cut.text


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_a_whole_call_greeting_turn_barge_in_and_transcripts(dialect: str) -> None:
    async with call_stack(FAST, dialect=dialect, chunk_ms=10) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            [session] = model.sessions
            assert session.dialect == dialect

            # 1. the greeting is heard, whole and unchanged
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            assert bytes(caller.played[: len(GREETING)]) == GREETING

            # 2. the caller asks; the model answers with the long reply
            await caller.say("caller_book_table")
            reply_start = len(caller.played)
            await caller.wait_until(played_more_than(caller, reply_start + 2500 * 8), timeout=WAIT)

            # 3. the caller talks over the reply: Twilio is cleared, the item truncated, never past what
            # had been played (how close to it is the real-time test's business)
            await caller.say("caller_interrupt")
            [(item_id, audio_end_ms)] = await model.wait_for(lambda: session.truncations, timeout=WAIT)
            [clear] = await caller.wait_until(lambda: caller.clears, timeout=WAIT)
            reply = bytes(session.produced[item_id])
            heard = clear.played_bytes - len(GREETING)
            assert 0 < audio_end_ms * 8 <= heard + slipped_before_the_clear(caller) * 8
            assert bytes(caller.played[len(GREETING) : len(GREETING) + heard]) == reply[:heard]

            # 4. the interruption is answered; the caller hears that answer to the end, then hangs up
            await model.wait_for(lambda: len(session.produced) >= 3 and not session.response_live, timeout=WAIT)
            answer = bytes(list(session.produced.values())[2])
            await caller.wait_until(heard_in_full(caller, len(GREETING) + heard + len(answer)), timeout=WAIT)
            assert bytes(caller.played) == GREETING + reply[:heard] + answer
            await caller.hangup()

        await model.wait_for(lambda: session.closed, timeout=WAIT)
        assert bytes(session.audio_received) == bytes(caller.sent_audio)
        assert caller.violations == [] and model.violations == [] and model.self_violations == []

        lines = [(line.role, line.text, line.interrupted) for line in app.transcripts.lines]
        assert ("agent", FIXTURE_TEXTS["agent_greeting"], False) in lines
        assert ("caller", FIXTURE_TEXTS["caller_book_table"], False) in lines
        assert ("caller", FIXTURE_TEXTS["caller_interrupt"], False) in lines
        [cut] = [line for line in app.transcripts.lines if line.interrupted]
        assert cut.role == "agent" and cut.heard_ms == audio_end_ms and cut.text
        assert ("agent", FIXTURE_TEXTS["agent_goodbye"], False) in lines


async def test_without_a_greeting_the_agent_waits_for_the_caller() -> None:
    async with call_stack(env={"VOICEAGENT_GREETING": ""}) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.pause(1000)
            assert caller.received_audio == bytearray()
            await caller.say("caller_book_table")
            await caller.wait_until(played_more_than(caller, 8000), timeout=WAIT)
            await caller.hangup()
        assert event_types(stack.model.sessions[0].received, "response.create") == []


async def test_hanging_up_closes_the_model_session_and_forgets_the_call() -> None:
    async with call_stack() as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_until(played_more_than(caller, 800), timeout=WAIT)
            await caller.hangup()
        await model.wait_for(lambda: model.sessions[0].closed, timeout=WAIT)
        await model.wait_for(lambda: not app.service.calls, timeout=WAIT)


async def test_a_model_that_will_not_speak_ulaw_ends_the_call_instead_of_playing_static(caplog_json) -> None:
    async with call_stack(ignore_audio_format=True) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_closed(timeout=WAIT)
        assert caller.closed_by_server
        assert caller.received_audio == bytearray()
    events = [line for line in caplog_json() if line.get("event") == "model_audio_format_refused"]
    assert events and events[0]["level"] == "error" and events[0]["call_sid"] == caller.call_sid


async def test_two_calls_at_once_keep_to_themselves() -> None:
    async with call_stack() as stack:
        model, app = stack.model, stack.app
        first, second = stack.caller(), stack.caller(from_number="+15559876543")
        async with first, second:
            assert await first.dial() and await second.dial()
            await first.wait_until(heard_in_full(first, len(GREETING)), timeout=WAIT)
            await second.wait_until(heard_in_full(second, len(GREETING)), timeout=WAIT)
            await first.say("caller_transfer")
            await model.wait_for(lambda: any(line.role == "caller" for line in app.transcripts.lines), timeout=WAIT)
            await first.hangup()
            await second.hangup()
        by_call: dict[str | None, list[tuple[str, str]]] = {}
        for line in app.transcripts.lines:
            by_call.setdefault(line.call_sid, []).append((line.role, line.text))
        assert ("caller", FIXTURE_TEXTS["caller_transfer"]) in by_call[first.call_sid]
        assert all(role == "agent" for role, _ in by_call[second.call_sid])
        assert model.violations == [] and first.violations == [] and second.violations == []
