"""Nothing the network or the model does takes a call down: dropped sessions, session caps, recycling,
an unreachable model, capacity limits — and no secret in any log line."""

from __future__ import annotations

import httpx
import pytest
from twilio.request_validator import RequestValidator

from voiceagent.testing.audio import FIXTURE_TEXTS, load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_API_KEY, TEST_AUTH_TOKEN, app_environment, serve_app

GREETING = load_fixture("agent_greeting")
WAIT = 60.0


def created_items(session) -> list[dict]:
    return [e for e in session.received if e.get("type") == "conversation.item.create"]


def replayed_texts(session) -> list[tuple[str, str]]:
    out = []
    for event in created_items(session):
        item = event["item"]
        out.append((item["role"], item["content"][0]["text"]))
    return out


def session_audio(model: FakeRealtimeServer) -> bytes:
    """What all the model sessions of a call received, in order."""
    return b"".join(bytes(session.audio_received) for session in model.sessions)


async def greet_and_ask(caller: FakeTwilioCaller, model: FakeRealtimeServer, session) -> None:
    """Greeting heard, one caller turn transcribed and answered in full."""
    await caller.wait_until(lambda: len(caller.played) >= len(GREETING) and not caller.pending_marks, timeout=WAIT)
    await caller.say("caller_book_table")
    await model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)


@pytest.mark.parametrize(("how", "code"), [("dropped", None), ("session cap", 1001)])
async def test_a_lost_model_session_is_replaced_and_the_conversation_replayed(how, code):
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye", "agent_goodbye")) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                assert await caller.dial()
                first = model.sessions[0]
                await greet_and_ask(caller, model, first)
                await model.wait_for(lambda: any(line.role == "caller" for line in app.transcripts.lines), timeout=WAIT)
                await caller.wait_until(lambda: not caller.pending_marks, timeout=WAIT)
                await model.drop(first, code=code, reason="Your session hit the maximum duration of 30 minutes.")
                await model.wait_for(lambda: len(model.sessions) == 2, timeout=WAIT)
                second = model.sessions[1]
                await model.wait_for(lambda: len(created_items(second)) >= 3, timeout=WAIT)
                assert second.received[0]["type"] == "session.update"
                assert replayed_texts(second) == [
                    ("assistant", FIXTURE_TEXTS["agent_greeting"]),
                    ("user", FIXTURE_TEXTS["caller_book_table"]),
                    ("assistant", FIXTURE_TEXTS["agent_goodbye"]),
                ]
                assert not [e for e in second.received if e.get("type") == "response.create"]  # no second greeting
                # the call carries on with the new session
                heard_before = len(caller.played)
                await caller.say("caller_transfer")
                await caller.wait_until(lambda: len(caller.played) > heard_before + 8000, timeout=WAIT)
                assert caller.streaming
                await caller.hangup()
            assert model.violations == [] and caller.violations == []
            texts = [(line.role, line.text) for line in app.transcripts.lines]
            assert ("caller", FIXTURE_TEXTS["caller_book_table"]) in texts
            assert ("caller", FIXTURE_TEXTS["caller_transfer"]) in texts


async def test_a_call_longer_than_the_recycle_interval_carries_on_across_it():
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_SESSION_RECYCLE_SECONDS="3")) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                assert await caller.dial()
                first = model.sessions[0]
                await caller.wait_until(lambda: len(caller.played) >= len(GREETING) and not caller.pending_marks,
                                        timeout=WAIT)
                # the first quiet moment after the interval: a fresh session takes over, make-before-break
                await model.wait_for(lambda: len(model.sessions) >= 2, timeout=WAIT)
                second = model.sessions[1]
                await model.wait_for(lambda: first.closed, timeout=WAIT)
                assert second.received[0]["type"] == "session.update"
                assert replayed_texts(second) == [("assistant", FIXTURE_TEXTS["agent_greeting"])]
                # the caller talks to the new session and is answered
                heard_before = len(caller.played)
                await caller.say("caller_goodbye")
                await caller.wait_until(lambda: len(caller.played) > heard_before + 8000, timeout=WAIT)
                assert caller.streaming and not caller.clears
                await caller.hangup()
            assert model.violations == [] and caller.violations == []
            assert bytes(session_audio(model)) == bytes(caller.sent_audio)[: len(session_audio(model))]
            callers = [line.text for line in app.transcripts.lines if line.role == "caller"]
            assert FIXTURE_TEXTS["caller_goodbye"] in callers


async def test_an_unreachable_model_gets_the_caller_an_apology():
    async with FakeRealtimeServer(refuse_next=10) as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_CONNECT_ATTEMPTS="3")) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                assert await caller.dial()
                await caller.wait_closed(timeout=WAIT)
            assert caller.closed_by_server and model.connection_attempts == 3
            # Twilio now asks the <Connect action> what to do: apologise and hang up
            url = app.base_url + "/twilio/stream-ended"
            params = {"CallSid": caller.call_sid, "AccountSid": caller.account_sid}
            signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params)
            async with httpx.AsyncClient() as client:
                response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
            assert app.settings.unavailable_message in response.text and "<Hangup" in response.text


async def test_beyond_max_calls_the_webhook_says_the_lines_are_busy():
    async with FakeRealtimeServer() as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_MAX_CALLS="1")) as app:
            first = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            second = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with first, second:
                assert await first.dial()
                assert not await second.dial()
                assert app.settings.busy_message in second.twiml_text and "<Hangup" in second.twiml_text
                assert model.connection_attempts == 1
                await first.hangup()


@pytest.mark.parametrize(
    "limit", [{"VOICEAGENT_CALLER_SILENCE_SECONDS": "2"}, {"VOICEAGENT_MAX_CALL_SECONDS": "3"}], ids=["silence", "length"]
)
async def test_a_limit_ends_the_call_after_a_goodbye_heard_in_full(limit):
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint, **limit)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                assert await caller.dial()
                await caller.wait_closed(timeout=WAIT)
            assert caller.closed_by_server
            creates = [e for e in model.sessions[0].received if e.get("type") == "response.create"]
            assert len(creates) == 2 and "goodbye" in creates[1]["response"]["instructions"]
            assert bytes(caller.played).endswith(load_fixture("agent_goodbye"))


async def test_no_secret_appears_in_the_logs_of_a_full_call(caplog_json):
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
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


async def test_the_servers_session_cap_is_survived_again_and_again():
    """The fake closes every session after 5 s the way the real one does at 30/60 minutes
    (an ``session_expired`` error, then close 1001); the call goes on across several sessions."""
    async with FakeRealtimeServer(speed=8.0, session_max_seconds=5, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                assert await caller.dial()
                await caller.wait_until(lambda: len(caller.played) >= len(GREETING), timeout=WAIT)
                await model.wait_for(lambda: len(model.sessions) >= 3, timeout=WAIT)
                for later in model.sessions[1:3]:
                    assert later.received[0]["type"] == "session.update"
                    assert ("assistant", FIXTURE_TEXTS["agent_greeting"]) in replayed_texts(later)
                heard_before = len(caller.played)
                await caller.say("caller_goodbye")
                await caller.wait_until(lambda: len(caller.played) > heard_before + 8000, timeout=WAIT)
                assert caller.streaming
                await caller.hangup()
            assert model.violations == [] and caller.violations == []
            assert any(line.role == "caller" for line in app.transcripts.lines)


class RotatingCredential:
    """An ``azure.identity.aio`` stand-in that hands out a new token on every request."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = list(tokens)
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken(self.tokens.pop(0), 2_000_000_000)

    async def close(self) -> None:
        pass


async def test_entra_id_gets_a_fresh_token_for_every_connect_and_logs_none(caplog_json):
    tokens = [f"eyJ0eXAiOiJKV1Qi.entra-token-{i}.signature{i}" for i in range(3)]
    credential = RotatingCredential(tokens)
    async with FakeRealtimeServer(api_key=None, bearer_tokens=tokens, speed=8.0) as model:
        env = app_environment(model.endpoint)
        del env["AZURE_OPENAI_API_KEY"]
        async with serve_app(env, credential=credential) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
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
