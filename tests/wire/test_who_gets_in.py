"""Only Twilio gets in: forged, unsigned and replayed requests are refused before any model
connection is opened (the fake Realtime server counts every handshake attempt)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers import WAIT, Stack, call_stack
from voiceagent.testing import TEST_AUTH_TOKEN, RunningApp, new_sid, wait_until, webhook_params


def signed(url: str, params: dict[str, str], token: str = TEST_AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


async def start_stream(
    app: RunningApp, call_sid: str, token: str | None, *, signature_token: str | None = TEST_AUTH_TOKEN
) -> int | None:
    """Open the media stream like Twilio would and send ``connected`` + ``start``; return the close code
    (the app must close it within ``WAIT``)."""
    url = app.base_url.replace("http://", "ws://") + "/twilio/media"
    headers = {}
    if signature_token:
        headers["x-twilio-signature"] = RequestValidator(signature_token).compute_signature(url, {})
    stream_sid = new_sid("MZ")
    parameters = {"token": token} if token is not None else {}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {
                        "accountSid": new_sid("AC"),
                        "streamSid": stream_sid,
                        "callSid": call_sid,
                        "tracks": ["inbound"],
                        "customParameters": parameters,
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            )
        )

        async def closed() -> bool:
            try:
                await ws.recv()
            except ConnectionClosed:
                return True
            return False

        await wait_until(closed, WAIT)
        return ws.close_code


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with call_stack() as stack:
        yield stack


async def test_a_forged_webhook_is_refused_and_opens_no_model_connection(stack: Stack) -> None:
    model = stack.model
    caller = stack.caller(auth_token="not-the-real-token")
    assert not await caller.dial()
    assert caller.http_status == 403
    unsigned = stack.caller(auth_token=None)
    assert not await unsigned.dial()
    assert unsigned.http_status == 403
    assert model.connection_attempts == 0


async def test_a_tampered_webhook_is_refused(stack: Stack) -> None:
    model, app = stack.model, stack.app
    url = app.base_url + "/twilio/voice"
    params = webhook_params(
        account_sid=new_sid("AC"), call_sid=new_sid("CA"), from_number="+15551234567", to_number="+15557654321"
    )
    headers = signed(url, params)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data={**params, "From": "+15550000000"}, headers=headers)
    assert response.status_code == 403
    assert model.connection_attempts == 0


async def test_an_unsigned_stream_upgrade_is_refused(stack: Stack) -> None:
    model, app = stack.model, stack.app
    url = app.base_url.replace("http://", "ws://") + "/twilio/media"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=10):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        async with connect(url, additional_headers={"x-twilio-signature": "Zm9yZ2Vk"}, open_timeout=10):
            pass
    assert model.connection_attempts == 0


async def test_a_stream_without_a_token_or_with_another_calls_token_is_closed(stack: Stack) -> None:
    model, app = stack.model, stack.app
    assert await start_stream(app, new_sid("CA"), None) == 1008
    # a real token, issued by a valid webhook for one call, replayed for another
    url = app.base_url + "/twilio/voice"
    victim = new_sid("CA")
    params = webhook_params(
        account_sid=new_sid("AC"), call_sid=victim, from_number="+15551234567", to_number="+15557654321"
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data=params, headers=signed(url, params))
    assert response.status_code == 200
    token = response.text.split('name="token" value="')[1].split('"')[0]
    await model.wait_for(lambda: model.connection_attempts == 1, timeout=WAIT)  # the victim's pre-warm
    assert await start_stream(app, new_sid("CA"), token) == 1008
    assert model.connection_attempts == 1


async def test_an_expired_token_is_refused(stack: Stack) -> None:
    model, app = stack.model, stack.app
    call_sid = new_sid("CA")
    stale = app.service.tokens.issue(call_sid, app.service.now() - 3600)
    assert await start_stream(app, call_sid, stale) == 1008
    assert model.connection_attempts == 0


async def test_a_second_stream_for_a_live_call_is_refused(stack: Stack) -> None:
    model, app = stack.model, stack.app
    async with stack.caller() as caller:
        assert await caller.dial()
        await caller.wait_until(lambda: len(caller.played) > 0, timeout=WAIT)
        attempts = model.connection_attempts
        assert await start_stream(app, caller.call_sid, caller.parameters["token"]) == 1008
        assert model.connection_attempts == attempts
        assert caller.streaming
        await caller.hangup()


async def test_the_stream_ended_callback_must_be_signed_too(stack: Stack) -> None:
    app = stack.app
    url = app.base_url + "/twilio/stream-ended"
    params = {"CallSid": new_sid("CA"), "AccountSid": new_sid("AC")}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, data=params)).status_code == 403
        good = await client.post(url, data=params, headers=signed(url, params))
    assert good.status_code == 200 and "<Hangup" in good.text


async def test_a_signature_rejection_says_which_url_it_checked_once_a_minute(
    caplog_json: Callable[[], list[dict[str, Any]]],
) -> None:
    """The usual cause is a PUBLIC_BASE_URL that is not the URL Twilio called: the log line says both."""
    async with call_stack(env={"PUBLIC_BASE_URL": "https://voice.example.com"}) as stack:
        for _ in range(5):
            caller = stack.caller(auth_token="not-the-real-token")
            assert not await caller.dial() and caller.http_status == 403
    rejected = [line for line in caplog_json() if line["event"] == "webhook_rejected"]
    assert len(rejected) == 1  # five refusals, one line
    [line] = rejected
    assert line["checked_against"] == "https://voice.example.com/twilio/voice"
    assert line["arrived_as"].startswith("http://127.0.0.1:") and "PUBLIC_BASE_URL" in line["hint"]
    assert "not-the-real-token" not in caplog_json.text()  # type: ignore[attr-defined]
