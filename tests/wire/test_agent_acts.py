"""The agent acts (issue 9), in whole calls through the real app: the fake model calls functions when it
hears a caller fixture (``function_calls=``), as the real one does in both dialects, and records the
outputs it gets back (``session.function_outputs``); the fake caller records what Twilio does once the
app ends the stream (``caller.after_stream``: the ``<Connect action>`` answer).

Measured against the fakes' accounting (bytes played, marks echoed, events received), never wall clocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import GREETING, WAIT, call_stack, event_types, heard_in_full
from voiceagent.testing import (
    Dial,
    FakeModelSession,
    FakeRealtimeServer,
    FakeTwilioCaller,
    Hangup,
    load_fixture,
    serve_asgi,
)

TOOLS = {"VOICEAGENT_TOOLS": "tests.tool_samples"}  # tests/tool_samples.py, as an operator's module (dotted)
AVAILABILITY = ("check_availability", {"party_size": 2, "time": "19:30"})
GOODBYE = load_fixture("agent_goodbye")


async def greeted(caller: FakeTwilioCaller) -> None:
    assert await caller.dial(), caller.refusal
    await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)


def sent_to_model(session: FakeModelSession) -> list[str]:
    """What the app sent the model after the session was set up, in order, as ``type`` or ``type:item``."""
    kinds = []
    for event in session.received:
        kind = event["type"]
        if kind == "conversation.item.create":
            kind += ":" + event["item"]["type"]
        if kind not in ("input_audio_buffer.append", "session.update"):
            kinds.append(kind)
    return kinds


async def answered_after_the_tools(caller: FakeTwilioCaller, session: FakeModelSession, model: Any) -> bytes:
    """The answer the model spoke once the outputs were in (its last response), heard in full."""
    await model.wait_for(lambda: len(session.responses) >= 3 and not session.response_live, timeout=WAIT)
    answer = bytes(session.produced[session.responses[-1].item_id])
    await caller.wait_until(heard_in_full(caller, len(GREETING) + len(answer)), timeout=WAIT)
    assert bytes(caller.played[len(GREETING) :]) == answer and answer
    return answer


async def tool_output(model: FakeRealtimeServer, session: FakeModelSession) -> str:
    """What the app answered the one function call the session made."""
    [call] = await model.wait_for(lambda: session.function_calls, timeout=WAIT)
    output = await model.wait_for(lambda: session.function_outputs.get(call["call_id"]), timeout=WAIT)
    assert output is not None
    return output


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_a_python_tools_result_reaches_the_model_and_the_agent_speaks_about_it(dialect: str) -> None:
    """Preview names the function only in the output item, GA also in ``arguments.done``: both work."""
    scripts = {"caller_book_table": [AVAILABILITY]}
    async with call_stack(dialect=dialect, env=TOOLS, function_calls=scripts, replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.say("caller_book_table")
            output = await tool_output(model, session)
            assert json.loads(output) == {"tables": 2, "party_size": 2, "time": "19:30"}
            assert await answered_after_the_tools(caller, session, model) == GOODBYE
            await caller.hangup()
        # the output, then one request to speak about it
        assert sent_to_model(session)[-2:] == ["conversation.item.create:function_call_output", "response.create"]
        assert model.violations == [] and caller.violations == [] and model.self_violations == []
        tool_lines = [line.text for line in app.transcripts.lines if line.role == "tool"]
        assert tool_lines == [f"check_availability → {output}"]


async def test_an_http_tool_is_called_with_the_arguments_and_the_header_from_the_environment(
    tmp_path: Any, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    secret = "booking-api-token-5f2e9c"
    received: list[tuple[str, dict[str, Any], str | None]] = []

    async def update(request: Request) -> JSONResponse:
        received.append((request.method, await request.json(), request.headers.get("authorization")))
        return JSONResponse({"booking_id": 12, "party_size": 4})

    async with serve_asgi(Starlette(routes=[Route("/update", update, methods=["POST"])])) as bookings:
        parameters = {"type": "object", "properties": {"party_size": {"type": "integer"}}, "required": ["party_size"]}
        tool = {"name": "update_booking", "description": "Change the booking.", "parameters": parameters}
        tool |= {
            "url": f"{bookings}/update",
            "method": "POST",
            "headers": {"Authorization": "Bearer ${BOOKING_API_TOKEN}"},
        }
        tools_file = tmp_path / "tools.json"
        tools_file.write_text(json.dumps({"tools": [tool]}))
        scripts = {"caller_interrupt": [("update_booking", {"party_size": 4})]}
        env = {"VOICEAGENT_TOOLS_FILE": str(tools_file), "BOOKING_API_TOKEN": secret}  # the kit reads no other
        async with call_stack(env=env, function_calls=scripts, replies=("agent_goodbye",)) as stack:
            model = stack.model
            async with stack.caller() as caller:
                await greeted(caller)
                session = model.sessions[0]
                await caller.say("caller_interrupt")
                output = await tool_output(model, session)
                await answered_after_the_tools(caller, session, model)
                await caller.hangup()
    assert received == [("POST", {"party_size": 4}, f"Bearer {secret}")]
    assert json.loads(output) == {"booking_id": 12, "party_size": 4}
    assert secret not in json.dumps(caplog_json())
    [called] = [line for line in caplog_json() if line["event"] == "tool_called"]
    assert called["name"] == "update_booking" and called["ok"] is True


async def test_end_call_hangs_up_only_once_the_goodbye_has_been_heard_in_full() -> None:
    """The model says goodbye and calls ``end_call`` in the same response: every byte of the goodbye is
    played (its marks echoed), then the stream ends and the ``<Connect action>`` answer hangs up. (Preview:
    the call is named only in its output item; GA's extra ``name`` is covered by the Python tool test.)"""
    scripts: dict[str, list[str | tuple[str, dict[str, Any]]]] = {"caller_goodbye": ["agent_goodbye", ("end_call", {})]}
    async with call_stack(dialect="preview", function_calls=scripts) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            await caller.say("caller_goodbye")
            after = await caller.wait_after_stream(timeout=WAIT)
        session = model.sessions[0]
        assert [call["name"] for call in session.function_calls] == ["end_call"]
        assert caller.closed_by_server and not caller.clears
        assert bytes(caller.played) == GREETING + GOODBYE  # all of it, and nothing after it
        assert caller.marks_echoed == caller.marks_received  # every mark reached before the stream closed
        assert after.verbs == (Hangup(),)
        assert model.violations == [] and caller.violations == []


async def test_transfer_call_dials_the_named_destination_after_the_hand_over_line() -> None:
    scripts = {"caller_transfer": ["agent_goodbye", ("transfer_call", {"destination": "support"})]}
    env = {"VOICEAGENT_TRANSFER_TO": "sales=+15551230001,support=+15551230002"}
    async with call_stack(env=env, function_calls=scripts) as stack:
        async with stack.caller() as caller:
            await greeted(caller)
            await caller.say("caller_transfer")
            after = await caller.wait_after_stream(timeout=WAIT)
        assert bytes(caller.played) == GREETING + GOODBYE and not caller.clears
        assert after.dialled == Dial(
            "+15551230002", None, caller.to_number, action=f"{stack.app.base_url}/twilio/dial-ended"
        )
        assert after.verbs == (after.dialled,)
        assert stack.model.violations == [] and caller.violations == []


async def test_failing_slow_and_malformed_tool_calls_leave_the_call_alive_and_the_model_told_why(
    caplog_json: Callable[[], list[dict[str, Any]]],
) -> None:
    """Three calls in one response: one raises, one outlives VOICEAGENT_TOOL_TIMEOUT_SECONDS, one has
    arguments that are not even JSON. The model gets an error output for each, then is asked to speak."""
    calls = [("fail", {"party_size": 2}), ("sleep_for", {"seconds": 5}), ("check_availability", '{"party_size": 2,')]
    env = TOOLS | {"VOICEAGENT_TOOL_TIMEOUT_SECONDS": "0.3"}
    async with call_stack(env=env, function_calls={"caller_book_table": calls}, replies=("agent_goodbye",)) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.say("caller_book_table")
            made = await model.wait_for(
                lambda: session.function_calls if len(session.function_calls) == 3 else [], WAIT
            )
            await model.wait_for(lambda: len(session.function_outputs) == 3, timeout=WAIT)
            errors = [json.loads(session.function_outputs[call["call_id"]])["error"] for call in made]
            assert errors[0].startswith("ValueError: no table for 2 people")
            assert "0.3 s" in errors[1]
            assert errors[2]  # says what is wrong with the arguments
            await answered_after_the_tools(caller, session, model)
            assert caller.streaming
            await caller.hangup()
        outputs = [kind for kind in sent_to_model(session) if kind.endswith("function_call_output")]
        assert len(outputs) == 3 and sent_to_model(session)[-1] == "response.create"
        assert model.violations == [] and caller.violations == []
    called = [(line["name"], line["ok"]) for line in caplog_json() if line["event"] == "tool_called"]
    assert sorted(called) == [("check_availability", False), ("fail", False), ("sleep_for", False)]


async def test_a_key_press_reaches_the_model_after_the_pause_that_ends_the_entry_and_it_answers() -> None:
    async with call_stack(replies=("agent_goodbye",)) as stack:
        model = stack.model
        async with stack.caller() as caller:
            await greeted(caller)
            session = model.sessions[0]
            await caller.press("4")
            await model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)
            await caller.wait_until(heard_in_full(caller, len(GREETING) + len(GOODBYE)), timeout=WAIT)
            await caller.hangup()
        [pressed] = [
            e for e in event_types(session.received, "conversation.item.create") if e["item"]["role"] == "user"
        ]
        assert pressed["item"]["content"] == [{"type": "input_text", "text": "(The caller keyed 4.)"}]
        assert sent_to_model(session)[-2:] == ["conversation.item.create:message", "response.create"]
        assert bytes(caller.played) == GREETING + GOODBYE
        assert model.violations == [] and caller.violations == []
