"""Turn-taking by the real service's rules (issue 16), in whole calls through the real app, in both dialects,
against a fake model with the service's response latency (``response.created`` 150 ms after the request,
in real time) that refuses an overlapping ``response.create`` (the suite fails any test where one was
refused: tests/conftest.py). Every reason to speak is answered once, none is refused, nothing from a
response that did not complete is carried out.

Measured against the fakes' accounting (bytes played, events received), never wall clocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import FAST, GREETING, MODEL_LEAD, WAIT, call_stack, event_types, heard_in_full
from voiceagent.testing import FakeModelSession, FakeTwilioCaller, Hangup, load_fixture
from voiceagent.testing.fake_realtime.outcomes import Failed

DIALECTS = ["ga", "preview"]
REAL_LATENCY: dict[str, Any] = {
    "response_delay_ms": 150 * MODEL_LEAD * FAST
}  # 150 ms of real time at the model's speed
TOOLS = {"VOICEAGENT_TOOLS": "tests.tool_samples"}
GOODBYE = load_fixture("agent_goodbye")
TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAY = "Your table for two is confirmed for eight o'clock."


async def greeted(caller: FakeTwilioCaller) -> None:
    assert await caller.dial(), caller.refusal
    await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)


def requests_after(session: FakeModelSession, kind: str) -> list[str]:
    """The types the app sent after its first event of ``kind`` (the ``type:item`` of item creates)."""
    kinds = [
        event["type"] + (":" + event["item"]["type"] if event["type"] == "conversation.item.create" else "")
        for event in session.received
        if event["type"] not in ("input_audio_buffer.append", "session.update")
    ]
    return kinds[kinds.index(kind) :] if kind in kinds else []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_pin_is_answered_once_after_the_whole_entry(dialect: str) -> None:
    async with call_stack(dialect=dialect, replies=("agent_goodbye",), **REAL_LATENCY) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            for key in "4271#":
                await caller.press(key)
            await model.wait_for(lambda: session.created_by_request >= 2 and not session.response_live, timeout=WAIT)
            await caller.wait_until(heard_in_full(caller, len(GREETING) + len(GOODBYE)), timeout=WAIT)
            await caller.hangup()
        items = [e["item"] for e in event_types(session.received, "conversation.item.create")]
        texts = [part["text"] for item in items if item.get("role") == "user" for part in item["content"]]
        assert texts == ["(The caller keyed 4271#.)"]
        assert len(event_types(session.received, "response.create")) == 2  # the greeting's, and the entry's
        assert bytes(caller.played) == GREETING + GOODBYE
        assert model.refusals == [] and model.violations == [] and caller.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_failed_response_is_asked_again_and_then_heard(dialect: str) -> None:
    async with call_stack(dialect=dialect, outcomes=[Failed()], **REAL_LATENCY) as stack:
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await stack.model.wait_for(lambda: stack.model.sessions, WAIT)
            session = stack.model.sessions[0]
            await stack.model.wait_for(lambda: len(session.responses) == 2 and not session.response_live, WAIT)
            said = bytes(session.produced[session.responses[-1].item_id])
            await caller.wait_until(heard_in_full(caller, len(said)), timeout=WAIT)  # the greeting, asked again
            statuses = [e["response"]["status"] for e in event_types(session.sent, "response.done")]
            assert statuses == ["failed", "completed"]
            await caller.hangup()
        [first, again] = event_types(session.received, "response.create")
        assert first == again | {"event_id": first["event_id"]}  # the same greeting, asked again
        assert bytes(caller.played) == said and said
        assert stack.model.refusals == [] and stack.model.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_response_that_fails_twice_is_apologised_for_and_the_call_ends(dialect: str) -> None:
    async with call_stack(dialect=dialect, outcomes=[Failed(), Failed()], **REAL_LATENCY) as stack:
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            after = await caller.wait_after_stream(timeout=WAIT)
        assert after.said and after.verbs[-1] == Hangup()  # the unavailable message, then the hang-up
        assert bytes(caller.played) == b""
        assert len(event_types(stack.model.sessions[0].received, "response.create")) == 2
        assert stack.model.refusals == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_wordless_end_call_still_says_goodbye_in_full(dialect: str) -> None:
    scripts: dict[str, Any] = {"caller_goodbye": [("end_call", {})]}  # the model hangs up without a word
    async with call_stack(dialect=dialect, function_calls=scripts, replies=("agent_goodbye",), **REAL_LATENCY) as stack:
        async with stack.caller() as caller:
            await greeted(caller)
            await caller.say("caller_goodbye")
            after = await caller.wait_after_stream(timeout=WAIT)
        session = stack.model.sessions[0]
        [closing] = event_types(session.received, "response.create")[1:]
        assert "goodbye" in closing["response"]["instructions"]
        assert bytes(caller.played) == GREETING + GOODBYE  # said in full, then the hang-up
        assert caller.marks_echoed == caller.marks_received
        assert after.verbs == (Hangup(),)
        assert stack.model.refusals == [] and stack.model.violations == [] and caller.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_tool_result_is_spoken_after_a_vad_blip(dialect: str) -> None:
    """The caller makes a sound while the tool runs: the server answers that turn itself, and the tool's
    result is still asked for and spoken once that response is done."""
    scripts: dict[str, Any] = {"caller_book_table": [("sleep_for", {"seconds": 1.0})]}
    async with call_stack(
        dialect=dialect, env=TOOLS, function_calls=scripts, replies=("agent_goodbye",), **REAL_LATENCY
    ) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.say("caller_book_table")
            await model.wait_for(lambda: session.function_calls, timeout=WAIT)
            await caller.say("caller_interrupt")  # while the tool sleeps: the server answers it by itself
            await model.wait_for(lambda: session.function_outputs, timeout=WAIT)
            await model.wait_for(
                lambda: "response.create" in requests_after(session, "conversation.item.create:function_call_output"),
                timeout=WAIT,
            )
            await model.wait_for(lambda: not session.response_live, timeout=WAIT)
            answer = bytes(session.produced[session.responses[-1].item_id])
            await caller.wait_until(lambda: bytes(caller.played).endswith(answer), timeout=WAIT)
            await caller.hangup()
        assert session.created_by_vad >= 2  # the table request, and the blip
        assert model.refusals == [] and model.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_transfer_nobody_answers_brings_the_caller_back_to_the_agent_with_the_conversation(
    dialect: str,
) -> None:
    scripts: dict[str, Any] = {"caller_transfer": ["agent_goodbye", ("transfer_call", {})]}
    env = {"VOICEAGENT_TRANSFER_TO": "sip:desk@pbx.example.com;transport=tls"}
    async with call_stack(
        dialect=dialect, env=env, function_calls=scripts, replies=("agent_goodbye",), **REAL_LATENCY
    ) as stack:
        model = stack.model
        async with stack.caller(dial_status="no-answer") as caller:
            await greeted(caller)
            await caller.say("caller_transfer")
            after = await caller.wait_after_stream(timeout=WAIT)
            assert after.dialled is not None and after.dialled.sip == "sip:desk@pbx.example.com;transport=tls"
            back = await caller.wait_after_dial(timeout=WAIT)
        assert back.said == ["Sorry, nobody could take your call just now. You are back with the assistant."]
        async with stack.caller(call_sid=caller.call_sid) as again:
            assert await again.follow(back.twiml), again.refusal
            await model.wait_for(lambda: len(model.sessions) == 2, timeout=WAIT)
            session = model.sessions[1]
            await model.wait_for(lambda: event_types(session.received, "session.update"), timeout=WAIT)
            instructions = event_types(session.received, "session.update")[0]["session"]["instructions"]
            assert "nobody took the call (no-answer)" in instructions  # the conversation carried over
            assert "transfer_call() to sip:desk@pbx.example.com;transport=tls" in instructions
            await again.say("caller_book_table")  # the agent is there again, and answers
            await model.wait_for(lambda: session.responses and not session.response_live, timeout=WAIT)
            answer = bytes(session.produced[session.responses[-1].item_id])
            await again.wait_until(heard_in_full(again, len(answer)), timeout=WAIT)
            await again.hangup()
        assert event_types(session.received, "response.create") == []  # no second greeting
        assert bytes(again.played) == answer
        assert model.refusals == [] and model.violations == [] and again.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_tool_result_and_an_operator_line_are_both_spoken(dialect: str, tmp_path: Path) -> None:
    """An operator's ``say`` posted while a tool runs is said, and so is the tool's result: one after the
    other, each asked for once the response before it is done."""
    scripts: dict[str, Any] = {"caller_book_table": [("sleep_for", {"seconds": 1.0})]}
    env = TOOLS | {"VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}", "VOICEAGENT_API_TOKEN": TOKEN}
    async with (
        call_stack(
            dialect=dialect, env=env, function_calls=scripts, replies=("agent_goodbye",), **REAL_LATENCY
        ) as stack,
        httpx.AsyncClient(base_url=stack.app.base_url, timeout=10) as http,
    ):
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.say("caller_book_table")
            await model.wait_for(lambda: session.function_calls, timeout=WAIT)
            said = await http.post(f"/api/calls/{caller.call_sid}/say", headers=AUTH, json={"text": SAY})
            assert said.status_code == 202, said.text
            # the greeting's, the operator's line and the tool result's
            await model.wait_for(lambda: session.created_by_request == 3 and not session.response_live, timeout=WAIT)
            spoken = [bytes(session.produced[r.item_id]) for r in session.responses[-2:]]
            await caller.wait_until(lambda: bytes(caller.played).endswith(b"".join(spoken)), timeout=WAIT)
            await caller.hangup()
        requests = event_types(session.received, "response.create")
        assert sum(SAY in str(request) for request in requests) == 1
        assert "response.create" in requests_after(session, "conversation.item.create:function_call_output")
        assert model.refusals == [] and model.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_cancelled_end_call_leaves_the_call_up_and_the_agent_answers(dialect: str) -> None:
    """The caller talks while the model writes ``end_call``'s arguments: the service finishes them, then
    cancels the response. Nothing is carried out; the caller's turn is answered."""
    scripts: dict[str, Any] = {"caller_goodbye": [("end_call", {"note": "the caller said goodbye " * 40})]}
    slow_arguments: dict[str, Any] = {"argument_delta_ms": 40 * MODEL_LEAD * FAST}  # 40 ms of real time between pieces
    async with call_stack(
        dialect=dialect, function_calls=scripts, replies=("agent_goodbye",), **REAL_LATENCY, **slow_arguments
    ) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.say("caller_goodbye")
            await model.wait_for(lambda: event_types(session.sent, "response.function_call_arguments.delta"), WAIT)
            await caller.say("caller_interrupt")  # "wait, one more thing"
            await model.wait_for(
                lambda: any(e["response"]["status"] == "cancelled" for e in event_types(session.sent, "response.done")),
                timeout=WAIT,
            )
            await model.wait_for(lambda: session.created_by_vad >= 2 and not session.response_live, timeout=WAIT)
            answer = bytes(session.produced[session.responses[-1].item_id])
            await caller.wait_until(lambda: bytes(caller.played).endswith(answer), timeout=WAIT)
            assert caller.streaming and caller.after_stream is None  # the call is up
            await caller.hangup()
        [call] = session.function_calls
        assert "not carried out" in session.function_outputs[call["call_id"]]
        assert model.refusals == [] and model.violations == []
