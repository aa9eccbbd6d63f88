"""Pre-warm: the webhook opens the model session so the greeting is ready when the stream starts; an
unclaimed session is discarded; a stream that lands on another process connects there."""

from __future__ import annotations

import httpx
from twilio.request_validator import RequestValidator

from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller, new_sid, webhook_params
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment, serve_app
from voiceagent.testing.waiting import wait_until

WAIT = 60.0
GREETING = load_fixture("agent_greeting")


async def test_the_webhook_prewarms_and_the_greeting_is_generated_before_the_stream_starts():
    async with FakeRealtimeServer(speed=8.0) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            url = app.base_url + "/twilio/voice"
            call_sid = new_sid("CA")
            params = webhook_params(
                account_sid=new_sid("AC"), call_sid=call_sid, from_number="+15551234567", to_number="+15557654321"
            )
            signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params)
            async with httpx.AsyncClient() as client:
                response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
            assert response.status_code == 200
            await model.wait_for(
                lambda: model.sessions and not model.sessions[0].response_live and model.sessions[0].produced,
                timeout=WAIT,
            )
            session = model.sessions[0]
            assert [e["type"] for e in session.received[:2]] == ["session.update", "response.create"]
            assert bytes(next(iter(session.produced.values()))) == GREETING  # all of it, before any stream


async def test_an_unclaimed_prewarmed_session_is_discarded():
    async with FakeRealtimeServer() as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_PREWARM_SECONDS="1")) as app:
            url = app.base_url + "/twilio/voice"
            params = webhook_params(
                account_sid=new_sid("AC"), call_sid=new_sid("CA"), from_number="+15551234567", to_number="+15557654321"
            )
            signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params)
            async with httpx.AsyncClient() as client:
                await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
            await model.wait_for(lambda: model.sessions and model.sessions[0].closed, timeout=WAIT)
            await wait_until(lambda: not app.service.calls, WAIT)
            assert model.connection_attempts == 1


async def test_a_stream_that_lands_on_another_process_connects_there():
    async with FakeRealtimeServer(speed=8.0) as model:
        async with serve_app(app_environment(model.endpoint)) as front:
            # a second process behind the same public URL (and auth token)
            env = app_environment(model.endpoint, PUBLIC_BASE_URL=front.base_url)
            async with serve_app(env) as other:
                caller = FakeTwilioCaller(
                    front.base_url, auth_token=TEST_AUTH_TOKEN, stream_via=other.base_url, speed=16
                )
                async with caller:
                    assert await caller.dial(), caller.refusal
                    await caller.wait_until(lambda: len(caller.played) >= len(GREETING), timeout=WAIT)
                    assert bytes(caller.played[: len(GREETING)]) == GREETING
                    assert caller.call_sid in other.service.calls
                    await caller.hangup()
                assert len(model.sessions) == 2  # the front's pre-warm, and the one that served the call
                assert model.violations == [] and caller.violations == []
