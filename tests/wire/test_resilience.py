"""Nothing the network or the model does takes a call down: dropped sessions, session caps, recycling,
an unreachable model, capacity limits — and no secret in any log line."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.helpers import GREETING, WAIT, answered, call_stack, event_types, heard_in_full
from voiceagent.testing import (
    FIXTURE_TEXTS,
    TEST_API_KEY,
    TEST_AUTH_TOKEN,
    FakeModelSession,
    FakeRealtimeServer,
    FakeTwilioCaller,
    load_fixture,
)


def told(session: FakeModelSession) -> str:
    """The instructions of the first ``session.update`` a model session received ("" before it has one):
    a replacement session learns the conversation so far there, not as replayed items."""
    updates = event_types(session.received, "session.update")
    return str(updates[0]["session"].get("instructions") or "") if updates else ""


def told_in_order(session: FakeModelSession, *texts: str) -> bool:
    positions = [told(session).find(text) for text in texts]
    return all(position >= 0 for position in positions) and positions == sorted(positions)


def session_audio(model: FakeRealtimeServer) -> bytes:
    """What all the model sessions of a call received, in order."""
    return b"".join(bytes(session.audio_received) for session in model.sessions)


async def greet_and_ask(caller: FakeTwilioCaller, model: FakeRealtimeServer, session: FakeModelSession) -> None:
    """Greeting heard, one caller turn transcribed and answered in full."""
    await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
    await caller.say("caller_book_table")
    await model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)


async def test_a_dropped_model_session_is_replaced_and_told_the_conversation_so_far() -> None:
    """The connection just goes (no close frame); a session closed by the server's cap is the next test."""
    async with call_stack(replies=("agent_goodbye", "agent_goodbye")) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            first = model.sessions[0]
            await greet_and_ask(caller, model, first)
            await model.wait_for(lambda: any(line.role == "caller" for line in app.transcripts.lines), timeout=WAIT)
            await caller.wait_until(lambda: not caller.pending_marks, timeout=WAIT)
            await model.drop(first)  # a TCP abort
            [_, second] = await model.wait_for(
                lambda: model.sessions[:2] if len(model.sessions) == 2 else [], timeout=WAIT
            )
            await model.wait_for(lambda: told(second), timeout=WAIT)
            assert second.received[0]["type"] == "session.update"
            texts = FIXTURE_TEXTS["agent_greeting"], FIXTURE_TEXTS["caller_book_table"], FIXTURE_TEXTS["agent_goodbye"]
            assert told_in_order(second, *texts), told(second)
            assert event_types(second.received, "conversation.item.create") == []  # told, not replayed as items
            assert event_types(second.received, "response.create") == []  # no second greeting
            # the call carries on with the new session
            await answered(caller, "caller_transfer")
            assert caller.streaming
            await caller.hangup()
        assert model.violations == [] and caller.violations == []
        assert len(model.sessions) == 2
        said = [(line.role, line.text) for line in app.transcripts.lines]
        assert ("caller", FIXTURE_TEXTS["caller_book_table"]) in said
        assert ("caller", FIXTURE_TEXTS["caller_transfer"]) in said


async def test_a_call_longer_than_the_recycle_interval_carries_on_across_it() -> None:
    async with call_stack(replies=("agent_goodbye",), env={"VOICEAGENT_SESSION_RECYCLE_SECONDS": "2"}) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            first = model.sessions[0]
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            # the first quiet moment after the interval: a fresh session takes over, make-before-break
            [_, second] = await model.wait_for(
                lambda: model.sessions[:2] if len(model.sessions) == 2 else [], timeout=WAIT
            )
            await model.wait_for(lambda: first.closed, timeout=WAIT)
            assert second.received[0]["type"] == "session.update"
            assert told_in_order(second, FIXTURE_TEXTS["agent_greeting"]), told(second)
            # the caller talks to the new session and is answered
            await answered(caller, "caller_goodbye")
            assert caller.streaming and not caller.clears
            await caller.hangup()
        assert model.violations == [] and caller.violations == []
        assert bytes(session_audio(model)) == bytes(caller.sent_audio)[: len(session_audio(model))]
        callers = [line.text for line in app.transcripts.lines if line.role == "caller"]
        assert FIXTURE_TEXTS["caller_goodbye"] in callers


async def test_an_unreachable_model_gets_the_caller_an_apology() -> None:
    async with call_stack(refuse_next=10, env={"VOICEAGENT_CONNECT_ATTEMPTS": "2"}) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_closed(timeout=WAIT)
        assert caller.closed_by_server and model.connection_attempts == 2
        # Twilio now asks the <Connect action> what to do: apologise and hang up
        url = app.base_url + "/twilio/stream-ended"
        params = {"CallSid": caller.call_sid, "AccountSid": caller.account_sid}
        signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params)
        async with httpx.AsyncClient() as client:
            response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
        assert app.settings.unavailable_message in response.text and "<Hangup" in response.text


async def test_beyond_max_calls_the_webhook_says_the_lines_are_busy() -> None:
    async with call_stack(env={"VOICEAGENT_MAX_CALLS": "1"}) as stack:
        first, second = stack.caller(), stack.caller()
        async with first, second:
            assert await first.dial()
            assert not await second.dial()
            assert second.twiml_text is not None
            assert stack.app.settings.busy_message in second.twiml_text and "<Hangup" in second.twiml_text
            assert stack.model.connection_attempts == 1
            await first.hangup()


@pytest.mark.parametrize(
    "limit",
    [{"VOICEAGENT_CALLER_SILENCE_SECONDS": "1"}, {"VOICEAGENT_MAX_CALL_SECONDS": "1.5"}],
    ids=["silence", "length"],
)
async def test_a_limit_ends_the_call_after_a_goodbye_heard_in_full(limit: dict[str, str]) -> None:
    async with call_stack(replies=("agent_goodbye",), env=limit) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_closed(timeout=WAIT)
        assert caller.closed_by_server
        creates = event_types(stack.model.sessions[0].received, "response.create")
        assert len(creates) == 2 and "goodbye" in creates[1]["response"]["instructions"]
        assert bytes(caller.played).endswith(load_fixture("agent_goodbye"))


async def test_no_secret_appears_in_the_logs_of_a_full_call(caplog_json: Any) -> None:
    async with call_stack(replies=("agent_goodbye",)) as stack:
        model = stack.model
        async with stack.caller() as caller:
            assert await caller.dial()
            session = model.sessions[0]
            await greet_and_ask(caller, model, session)
            await caller.say("caller_interrupt")
            await model.wait_for(lambda: len(session.produced) >= 3, timeout=WAIT)
            await caller.hangup()
        await model.wait_for(lambda: session.closed, timeout=WAIT)
        stream_token = caller.parameters["token"]
    text = caplog_json.text()
    events = {line["event"] for line in caplog_json()}
    assert {"call_incoming", "transcript", "call_ended"} <= events  # the log is not empty
    [ended] = [line for line in caplog_json() if line["event"] == "call_ended"]
    assert ended["call_sid"] == caller.call_sid and ended["turns"] >= 1 and ended["total_tokens"] > 0
    assert ended["first_audio_ms"] >= 0 and ended["bytes_in"] == len(caller.sent_audio)
    for secret in (TEST_API_KEY, TEST_AUTH_TOKEN, stream_token, stream_token.split(".")[1]):
        assert secret not in text
    assert caller.from_number not in text  # masked by default
    assert caller.from_number[:5] + "***" + caller.from_number[-4:] in text


async def test_the_servers_session_cap_is_survived_again_and_again() -> None:
    """Each session is closed the way the server closes one at its cap (close 1001) as soon as it has done
    its part; the call goes on across three sessions, each told the conversation so far. (The fake's own
    timed cap is covered in test_fake_realtime; here the moments are chosen, so a slow machine cannot move
    a cap into the middle of the greeting.)"""
    reason = "Your session hit the maximum duration of 30 minutes."
    async with call_stack(replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_until(lambda: len(caller.played) >= len(GREETING), timeout=WAIT)
            for replaced in (0, 1):
                await model.drop(model.sessions[replaced], code=1001, reason=reason)

                def replacement_told(n: int = replaced + 1) -> bool:
                    return len(model.sessions) > n and bool(told(model.sessions[n]))

                await model.wait_for(replacement_told, timeout=WAIT)
            later = model.sessions[1:3]
            for session in later:
                assert session.received[0]["type"] == "session.update"
                assert told_in_order(session, FIXTURE_TEXTS["agent_greeting"]), told(session)
                assert event_types(session.received, "response.create") == []  # no second greeting
            await answered(caller, "caller_goodbye")
            assert caller.streaming
            await caller.hangup()
        assert model.violations == [] and caller.violations == []
        assert ("caller", FIXTURE_TEXTS["caller_goodbye"]) in [(line.role, line.text) for line in app.transcripts.lines]


class RotatingCredential:
    """An ``azure.identity.aio`` stand-in that hands out a new token on every request."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = list(tokens)
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken(self.tokens.pop(0), 2_000_000_000)

    async def close(self) -> None:
        pass


async def test_entra_id_gets_a_fresh_token_for_every_connect_and_logs_none(caplog_json: Any) -> None:
    tokens = [f"eyJ0eXAiOiJKV1Qi.entra-token-{i}.signature{i}" for i in range(3)]
    credential = RotatingCredential(tokens)
    env: dict[str, str | None] = {"AZURE_OPENAI_API_KEY": None}
    async with call_stack(api_key=None, bearer_tokens=tokens, env=env, credential=credential) as stack:
        model = stack.model
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_until(lambda: len(caller.played) >= len(GREETING), timeout=WAIT)
            await model.drop(model.sessions[0])
            await model.wait_for(lambda: len(model.sessions) == 2, timeout=WAIT)
            await caller.hangup()
    sent = [s.headers.get("authorization") for s in model.sessions]
    assert sent == [f"Bearer {tokens[0]}", f"Bearer {tokens[1]}"]
    assert set(credential.scopes) == {"https://cognitiveservices.azure.com/.default"}
    text = caplog_json.text()
    assert all(token not in text for token in tokens) and "entra-token" not in text
