"""Right the first time against the real services (issue 7): whole calls through the real app against
fakes that misbehave the way Twilio and Azure OpenAI really do — uneven audio deltas, a slow handshake,
a refused or never confirmed session, the text-only switch, failed transcriptions, a TLS proxy.

Measured against the fakes' own accounting (bytes sent, bytes played, mark echoes, what each session
received), with generous bounded waits; the one latency test runs the caller in real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import (
    GREETING,
    REAL_TIME,
    WAIT,
    audio_deltas,
    call_stack,
    event_types,
    heard_in_full,
    played_more_than,
    slipped_before_the_clear,
)
from voiceagent.testing import BYTES_PER_MS, FIXTURE_TEXTS, FakeTwilioCaller, LoopLag, load_fixture

UNEVEN = (50, 300)  # ms: audio deltas as uneven as the real service's


def error_at_the_clear(caller: FakeTwilioCaller, audio_end_ms: int, item_start: int) -> tuple[float, float]:
    """How far ``audio_end_ms`` is from what the caller had heard of the item (which began at byte
    ``item_start`` of what it played) when the clear came; and the media time its clock lost meanwhile
    (the app assumes Twilio plays in real time, so a clock that slipped makes the app's estimate run ahead)."""
    [clear] = caller.clears
    heard_ms = (clear.played_bytes - item_start) / BYTES_PER_MS
    return audio_end_ms - heard_ms, slipped_before_the_clear(caller)


async def barge_in_in_real_time(dialect: str) -> None:
    async with call_stack(REAL_TIME, dialect=dialect, delta_ms=UNEVEN, seed=7, replies=("agent_goodbye",)) as stack:
        model = stack.model
        async with stack.caller() as caller, LoopLag() as lag:
            assert await caller.dial(), (dialect, caller.refusal)
            [session] = model.sessions
            await caller.wait_until(played_more_than(caller, 1100 * BYTES_PER_MS), timeout=WAIT)
            speaking = asyncio.create_task(caller.say("caller_transfer"))
            [(item_id, audio_end_ms)] = await model.wait_for(lambda: session.truncations, timeout=WAIT)
            await caller.wait_until(lambda: caller.clears, timeout=WAIT)
            error_ms, slipped_ms = error_at_the_clear(caller, audio_end_ms, 0)
            # exact on a quiet machine; on a loaded one, a late wake-up delays a mark echo or the clear (the
            # app's estimate then errs low) or the caller's next tick (it then errs high): allow for each
            late = 2 * lag.worst_ms
            assert -40 - late <= error_ms <= 40 + late + slipped_ms, (dialect, error_ms, slipped_ms, lag.worst_ms)
            await caller.hangup()
            await speaking
        sizes = {len(audio) for audio in audio_deltas(session, item_id)}
        assert len(sizes) > 3 and max(sizes) > 2 * min(sizes)  # the deltas really were uneven
        assert session.errors_sent == [] and model.violations == [] and caller.violations == []


async def test_barge_in_lands_where_the_caller_stopped_hearing_with_uneven_deltas_in_real_time() -> None:
    """The caller plays in real time (as Twilio does), the model streams 4x faster in deltas of 50 to
    300 ms: the truncation lands within 40 ms of what the caller had heard, in both dialects."""
    await asyncio.gather(barge_in_in_real_time("ga"), barge_in_in_real_time("preview"))


async def test_nothing_the_caller_says_is_lost_while_the_model_connects_slowly() -> None:
    async with call_stack(4.0, connect_delay=0.8, env={"VOICEAGENT_GREETING": ""}) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            speaking = asyncio.create_task(caller.say("caller_book_table"))  # at once, before the model is up
            await model.wait_for(lambda: model.sessions, timeout=WAIT)
            assert len(caller.sent_audio) >= 500 * BYTES_PER_MS  # some of it went out while connecting
            await speaking
            await caller.wait_until(played_more_than(caller, 8000), timeout=WAIT)  # and it was answered
            await caller.hangup()
        [session] = model.sessions
        await model.wait_for(lambda: session.closed, timeout=WAIT)
        assert bytes(session.audio_received) == bytes(caller.sent_audio)  # every frame, in order
        assert ("caller", FIXTURE_TEXTS["caller_book_table"]) in [
            (line.role, line.text) for line in app.transcripts.lines
        ]
        assert model.violations == [] and caller.violations == []


async def test_a_refused_session_update_ends_the_call_with_the_apology_and_never_plays_static(
    caplog_json: Any,
) -> None:
    """An older preview deployment offers three voices; the operator configured another. The server says so
    (its error names our ``session.update``) and keeps PCM 24 kHz: not one byte may reach the caller."""
    offered = ("alloy", "echo", "shimmer")
    async with call_stack(dialect="preview", voices=offered, env={"VOICEAGENT_VOICE": "coral"}) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            after = await caller.wait_after_stream(timeout=WAIT)
        assert caller.closed_by_server and caller.received_audio == bytearray()
        assert after.said == [app.settings.unavailable_message] and after.hung_up
        # (one session, or two: see test_a_stream_that_starts_as_a_refused_prewarm_ends_gets_no_second_session)
        for session in model.sessions:
            [update] = event_types(session.received, "session.update")
            [error] = session.errors_sent
            assert error["error"]["event_id"] == update["event_id"] and "'coral'" in error["error"]["message"]
            assert event_types(session.received, "response.create") == [] and not session.produced
    rejected = [line for line in caplog_json() if line["event"] == "model_session_rejected"]
    assert rejected and all(line["message"] == error["error"]["message"] for line in rejected)
    assert all(line["call_sid"] == caller.call_sid for line in rejected)


async def test_a_stream_that_starts_as_a_refused_prewarm_ends_gets_no_second_session() -> None:
    async with call_stack(dialect="preview", voices=("alloy",), env={"VOICEAGENT_VOICE": "coral"}) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_after_stream(timeout=WAIT)
        assert stack.model.connection_attempts == 1


async def test_a_session_never_confirmed_ends_the_call_within_the_ready_time(caplog_json: Any) -> None:
    env = {"VOICEAGENT_SESSION_READY_SECONDS": "0.5"}
    async with call_stack(REAL_TIME, confirm_session=False, env=env) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            after = await caller.wait_after_stream(timeout=WAIT)
        # the clock started with the model connect, before the stream: the stream lasted about that long
        # (its media clock never runs ahead of the wall clock), far less than the default 5 s
        assert caller.closed_by_server and caller.media_ms <= 2000
        assert caller.received_audio == bytearray()
        assert after.said == [stack.app.settings.unavailable_message] and after.hung_up
        assert event_types(stack.model.sessions[0].received, "response.create") == []
    assert [line["waited_s"] for line in caplog_json() if line["event"] == "model_session_unconfirmed"] == [0.5]


async def test_after_a_dropped_session_the_call_still_speaks_though_assistant_text_would_mute_it() -> None:
    """The fake switches a session to text-only answers once assistant text items are created in it (the
    known trap). A replacement session must learn the conversation some other way, and go on speaking."""
    async with call_stack(text_after_assistant_text=True, replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            first = model.sessions[0]
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            await caller.say("caller_book_table")
            await model.wait_for(lambda: len(first.produced) >= 2 and not first.response_live, timeout=WAIT)
            await caller.wait_until(lambda: not caller.pending_marks, timeout=WAIT)
            await model.drop(first)
            second = await model.wait_for(lambda: model.sessions[1] if len(model.sessions) > 1 else None, WAIT)
            assert second is not None
            await model.wait_for(lambda: event_types(second.received, "session.update"), timeout=WAIT)
            heard_before = len(caller.played)
            await caller.say("caller_transfer")
            await model.wait_for(lambda: second.produced and not second.response_live, timeout=WAIT)
            [answer] = [bytes(audio) for audio in second.produced.values()]
            await caller.wait_until(heard_in_full(caller, heard_before + len(answer)), timeout=WAIT)
            assert bytes(caller.played[heard_before:]) == answer == load_fixture("agent_goodbye")
            assert not second.answers_in_text
            await caller.hangup()
        assert model.violations == [] and caller.violations == []
        agent = [line.text for line in app.transcripts.lines if line.role == "agent"]
        assert agent.count(FIXTURE_TEXTS["agent_goodbye"]) == 2  # answered before and after the drop


async def test_a_failed_transcription_keeps_an_unintelligible_caller_line_and_the_call_goes_on(
    caplog_json: Any,
) -> None:
    async with call_stack(fail_transcription=True, replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            await caller.say("caller_book_table")
            await caller.wait_until(played_more_than(caller, len(GREETING) + 8000), timeout=WAIT)  # answered
            await caller.hangup()
        await model.wait_for(lambda: model.sessions[0].closed, timeout=WAIT)
        assert ("caller", "(unintelligible)") in [(line.role, line.text) for line in app.transcripts.lines]
        sent = [e for e in model.sessions[0].sent if e["type"].endswith("input_audio_transcription.failed")]
        assert len(sent) == 1
    [ended] = [line for line in caplog_json() if line["event"] == "call_ended"]
    assert ended["transcription_failures"] == 1
    assert [line["event"] for line in caplog_json()].count("caller_transcription_failed") == 1


async def test_behind_a_tls_proxy_without_public_base_url_a_call_works_with_forwarded_proto_wss() -> None:
    """No PUBLIC_BASE_URL: the app takes the scheme from X-Forwarded-Proto (https on webhooks, wss on the
    upgrade, as common proxies send), so the signatures Twilio made for the public https/wss URLs check."""
    async with call_stack(env={"PUBLIC_BASE_URL": ""}) as stack:
        assert stack.app.settings.public_base_url is None
        public = stack.app.base_url.replace("http://", "https://")
        caller = stack.caller(
            public_base_url=public,
            proxy_headers={"X-Forwarded-Proto": "https"},
            upgrade_proxy_headers={"X-Forwarded-Proto": "wss"},
        )
        async with caller:
            assert await caller.dial(), caller.refusal
            assert caller.stream_url == public.replace("https://", "wss://") + "/twilio/media"
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            assert bytes(caller.played[: len(GREETING)]) == GREETING
            await caller.hangup()
        assert caller.violations == [] and stack.model.violations == []
