"""The second door for a call whose instance died: where Twilio does not request the ``<Connect action>``
after a socket lost without a close frame, the ``<Stream statusCallback>`` is told ``stream-error`` and a
surviving instance replaces the call's TwiML through the REST API (a fake of it here) with the resume
``<Connect><Stream>`` — once per loss, whichever door opens first.

The same real parts as ``test_several_instances`` (PostgreSQL, two ``voiceagent serve``, haproxy in round
robin), with ``TWILIO_ACCOUNT_SID`` set and ``VOICEAGENT_TWILIO_API_URL`` at the fake REST API.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator

import pytest
from twilio.request_validator import RequestValidator

from tests.helpers import GREETING, WAIT
from tests.wire.test_several_instances import (  # noqa: F401 (fixtures and the skip marks)
    COMMIT_WINDOW_SECONDS,
    Line,
    caller,
    figure,
    greeted,
    line,
    pytestmark,
    schema_url,
)
from voiceagent.testing import FIXTURE_TEXTS, TEST_AUTH_TOKEN, FakeTwilioCaller, wait_until
from voiceagent.testing.fake_twilio import new_sid
from voiceagent.testing.fake_twilio_rest import FakeTwilioRest
from voiceagent.testing.twilio_dial import post_webhook

ACCOUNT_SID = "AC" + "5a" * 16


@pytest.fixture
async def rest() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest(TEST_AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def line_environment(rest: FakeTwilioRest) -> dict[str, str]:
    return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "VOICEAGENT_TWILIO_API_URL": rest.url}


async def kill_the_owner_mid_call(on: Line, call: FakeTwilioCaller) -> tuple[int, float]:
    """Greeted, one question asked and recorded, then kill -9 of the call's instance: the model sessions
    before, and when it died."""
    await greeted(call)
    assert call.parameters and call.twiml_text and "statusCallback=" in call.twiml_text
    a = await on.owner(call.call_sid)
    await call.say("caller_book_table")
    await wait_until(lambda: len(a.logged("transcript")) >= 2, WAIT)  # the greeting and the caller's turn
    await asyncio.sleep(COMMIT_WINDOW_SECONDS)
    sessions_before = len(on.model.sessions)
    a.process.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    assert await asyncio.wait_for(a.process.wait(), WAIT) == -signal.SIGKILL
    return sessions_before, killed


async def test_kill_9_without_the_action_resumes_through_the_status_callback_and_the_rest_api(
    line: Line,  # noqa: F811 (the fixture)
    rest: FakeTwilioRest,
) -> None:
    options = {"follow_connect": True, "action_after_lost_socket": False, "account_sid": ACCOUNT_SID}
    async with rest.place(caller(line, **options)) as call:
        a_then_b = list(line.instances)
        sessions_before, killed = await kill_the_owner_mid_call(line, call)
        await call.wait_until(lambda: call.streams == 2, timeout=WAIT)
        figure("kill -9 to the stream resumed by the REST update, s", round(time.perf_counter() - killed, 2))
        assert call.action_answers == []  # Twilio asked no <Connect action>: the REST update did it
        assert [update.call_sid for update in rest.updates] == [call.call_sid]
        assert "<Connect" in rest.updates[0].twiml and 'name="resume"' in rest.updates[0].twiml
        await call.wait_until(lambda: any(event == "stream-error" for event, _ in call.stream_reports), WAIT)
        assert ("stream-error", 204) in call.stream_reports  # answered by the survivor (through the proxy)
        resumed = await wait_until(lambda: line.model.sessions[sessions_before:] or None, WAIT)
        assert resumed is not None
        heard = len(call.played)
        await call.wait_until(lambda: len(call.played) >= heard + len(GREETING) // 2, timeout=WAIT)  # the resume line
        assert any("Sorry, we were cut off" in json.dumps(session.received) for session in resumed)
        assert any(FIXTURE_TEXTS["caller_book_table"] in json.dumps(s.received) for s in resumed)  # the context
        survivor = next(each for each in a_then_b if each.process.returncode is None)
        assert [e.get("door") for e in survivor.logged("call_resuming") if e.get("door")] == [
            "status callback + REST update"
        ]
        heard = len(call.played)
        await call.say("caller_transfer")
        await call.wait_until(lambda: len(call.played) > heard + len(GREETING) // 2, timeout=WAIT)  # answered
        figure("streams of the call", call.streams)
        figure("REST updates", len(rest.updates))
        await call.hangup()


async def test_where_twilio_asks_the_action_too_the_call_is_resumed_once(
    line: Line,  # noqa: F811 (the fixture)
    rest: FakeTwilioRest,
) -> None:
    async with rest.place(caller(line, follow_connect=True, account_sid=ACCOUNT_SID)) as call:
        await kill_the_owner_mid_call(line, call)
        await call.wait_until(lambda: call.streams == 2, timeout=WAIT)
        survivor = next(each for each in line.instances if each.process.returncode is None)
        # the status door looks after the action door, finds the call held by the survivor, and lets it be
        await wait_until(lambda: survivor.logged("call_resume_skipped"), WAIT)
        assert rest.updates == [] and call.streams == 2
        assert len(call.action_answers) == 1 and "<Connect" in call.action_answers[0].twiml
        figure("resumes of one loss with both doors open", call.streams - 1)
        await call.hangup()


async def test_the_status_callback_is_a_signed_webhook(
    line: Line,  # noqa: F811 (the fixture)
    rest: FakeTwilioRest,
) -> None:
    form = {
        "AccountSid": ACCOUNT_SID, "CallSid": new_sid("CA"), "StreamSid": new_sid("MZ"),
        "StreamEvent": "stream-error", "StreamError": "forged", "Timestamp": "2026-01-01T00:00:00.000Z",
    }  # fmt: skip
    url = line.proxy + "/twilio/stream-status"
    unsigned = await post_webhook(url, form, validator=None)
    assert unsigned.status_code == 403
    signed = await post_webhook(url, form, validator=RequestValidator(TEST_AUTH_TOKEN))
    assert signed.status_code == 204  # a call nobody owns: nothing to resume
    await wait_until(lambda: any(each.logged("call_resume_skipped") for each in line.instances), WAIT)
    assert rest.updates == []
