"""The agent acts, as the core sees it: function calls out and back, hanging up and transferring after
the closing words were heard, the keypad as caller input. Injected time, no I/O."""

from __future__ import annotations

import json

from tests.core_helpers import READY, b64, log_lines, of, under_way
from tests.core_helpers import commands as to_model
from voiceagent.call import (
    Accepted,
    CallCore,
    CallOptions,
    Digit,
    EndCall,
    EndReason,
    Farewell,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    Refused,
    RunTool,
    StreamStarted,
)
from voiceagent.realtime import events as ev

T0 = 100.0
CALL = "CA" + "1" * 32


def in_call(options: CallOptions | None = None) -> CallCore:
    core = CallCore(options or CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    core.model_event(READY, T0)
    core.transport_event(StreamStarted(), T0)
    return core


def test_several_calls_in_one_response_run_at_once_and_answer_together_then_one_response() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    assert core.model_event(ev.FunctionCall("r1", "c1", "check_availability", '{"party_size": 2}'), T0) == []
    assert core.model_event(ev.FunctionCall("r1", "c2", "opening_hours", "{}"), T0) == []  # until completed
    done = core.model_event(ev.ResponseDone("r1", "completed"), T0)
    assert of(done, RunTool) == [
        RunTool("c1", "check_availability", '{"party_size": 2}'),
        RunTool("c2", "opening_hours", "{}"),
    ]
    assert to_model(core.tool_finished("c2", '{"open": "18:00"}', T0 + 0.2)) == []  # c1 still running
    actions = core.tool_finished("c1", '{"tables": 2}', T0 + 0.5)
    assert to_model(actions) == [
        ev.FunctionOutput("c1", '{"tables": 2}'),
        ev.FunctionOutput("c2", '{"open": "18:00"}'),
        ev.CreateResponse(),
    ]
    [log] = [log for log in log_lines(actions) if log.event == "tool_called"]
    assert log.fields == {"name": "check_availability", "ok": True, "duration_ms": 500}
    assert [a.line.role for a in of(actions, RecordLine)] == ["tool"]


def test_a_function_call_of_a_response_that_did_not_complete_is_not_carried_out() -> None:
    core = in_call(CallOptions(end_call_tool=True))
    for status in ("cancelled", "failed", "incomplete"):
        core.model_event(ev.ResponseCreated("r-" + status), T0)
        core.model_event(ev.FunctionCall("r-" + status, "c-" + status, "end_call", "{}"), T0)
        done = core.model_event(ev.ResponseDone("r-" + status, status), T0)
        assert of(done, RunTool) == [] and of(done, EndCall) == []
        [output] = [c for c in to_model(done) if isinstance(c, ev.FunctionOutput)]
        assert output.call_id == "c-" + status and status in output.output  # the model knows it did not happen
        assert [log.fields for log in log_lines(done) if log.event == "tool_not_run"] == [
            {"name": "end_call", "status": status}
        ]
        core.handle_timer(T0 + 5)  # a failed response's retry, so that the next one can be asked
        core.model_event(ev.ResponseCreated("again-" + status), T0 + 5)
        core.model_event(ev.ResponseDone("again-" + status, "completed"), T0 + 5)
    assert core.phase.name == "IN_CALL"


def test_a_caller_who_spoke_meanwhile_gets_the_answer_in_their_turn_and_no_result_is_lost() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "lookup", "{}"), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    core.model_event(ev.SpeechStarted("u", 0), T0 + 0.1)  # the caller speaks while the tool runs
    assert to_model(core.tool_finished("c1", '{"found": true}', T0 + 0.3)) == [
        ev.FunctionOutput("c1", '{"found": true}')
    ]


def test_a_failed_tool_reaches_the_model_as_an_error_and_the_call_goes_on() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "book", "{not json"), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    error = json.dumps({"error": "arguments are not valid JSON"})
    actions = core.tool_finished("c1", error, T0 + 0.1, error="invalid arguments")
    assert to_model(actions)[0] == ev.FunctionOutput("c1", error)
    assert [log.fields["ok"] for log in log_lines(actions) if log.event == "tool_called"] == [False]
    assert of(actions, EndCall) == []


def test_end_call_hangs_up_only_after_the_closing_words_were_heard_in_full() -> None:
    core = in_call(CallOptions(end_call_tool=True))
    core.model_event(ev.ResponseCreated("r1"), T0)
    [play] = of(core.model_event(ev.AudioDelta("r1", "bye", b64(8000)), T0), PlayAudio)
    assert of(core.model_event(ev.FunctionCall("r1", "c1", "end_call", "{}"), T0), EndCall) == []
    assert of(core.model_event(ev.ResponseDone("r1", "completed"), T0 + 0.1), EndCall) == []  # still playing
    assert of(core.transport_event(PlayedUpTo("bye", play.end // 2), T0 + 0.5), EndCall) == []
    [end] = of(core.transport_event(PlayedUpTo("bye", play.end), T0 + 1), EndCall)
    assert end == EndCall(EndReason.AGENT_HUNG_UP, "the agent ended the call", Farewell.HANG_UP)


def test_transfer_call_dials_the_named_destination_after_the_hand_over_line() -> None:
    targets = {"sales": "+15551230001", "support": "+15551230002"}
    core = in_call(CallOptions(transfer_targets=targets))
    core.model_event(ev.ResponseCreated("r1"), T0)
    [play] = of(core.model_event(ev.AudioDelta("r1", "x", b64(800)), T0), PlayAudio)
    core.model_event(ev.FunctionCall("r1", "c1", "transfer_call", '{"destination": "support"}'), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    [end] = of(core.transport_event(PlayedUpTo("x", play.end), T0 + 0.2), EndCall)
    assert (end.farewell, end.transfer_to) == (Farewell.TRANSFER, "+15551230002")


def test_a_transfer_to_an_unknown_destination_is_an_error_for_the_model_not_a_hang_up() -> None:
    core = in_call(CallOptions(transfer_targets={"sales": "+15551230001"}))
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "transfer_call", '{"destination": "billing"}'), T0)
    actions = core.model_event(ev.ResponseDone("r1", "completed"), T0)
    [output] = [c for c in to_model(actions) if isinstance(c, ev.FunctionOutput)]
    assert "unknown destination" in output.output and of(actions, EndCall) == []


def test_a_single_transfer_destination_needs_no_argument() -> None:
    core = in_call(CallOptions(transfer_targets={"": "sip:desk@pbx.example.com"}))
    core.model_event(ev.ResponseCreated("r1"), T0)
    [play] = of(core.model_event(ev.AudioDelta("r1", "x", b64(800)), T0), PlayAudio)
    core.model_event(ev.FunctionCall("r1", "c1", "transfer_call", "{}"), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    [end] = of(core.transport_event(PlayedUpTo("x", play.end), T0 + 0.2), EndCall)
    assert end.transfer_to == "sip:desk@pbx.example.com"


def test_a_keypad_entry_reaches_the_model_whole_once_and_never_a_log_line() -> None:
    core = in_call(CallOptions(dtmf_to_model=True))
    actions = [action for key in "427" for action in core.transport_event(Digit(key), T0)]
    assert to_model(actions) == []  # gathered
    actions += core.transport_event(Digit("1"), T0 + 0.5) + core.transport_event(Digit("#"), T0 + 1)
    assert to_model(actions) == [ev.CreateTextItem("user", "(The caller keyed 4271#.)"), ev.CreateResponse()]
    logged = [log.fields for log in log_lines(actions)] + [line.line.text for line in of(actions, RecordLine)]
    assert "427" not in repr(logged) and not any(key in repr(logged) for key in "47#"), logged


def test_a_keypad_entry_ends_at_a_pause_too() -> None:
    core = in_call(CallOptions(dtmf_to_model=True, dtmf_pause_seconds=2.0))
    core.transport_event(Digit("9"), T0)
    core.transport_event(Digit("8"), T0 + 1)
    assert core.next_deadline() == T0 + 3
    assert to_model(core.handle_timer(T0 + 2.9)) == []
    assert to_model(core.handle_timer(T0 + 3)) == [
        ev.CreateTextItem("user", "(The caller keyed 98.)"),
        ev.CreateResponse(),
    ]
    ignored = in_call(CallOptions(dtmf_to_model=False)).transport_event(Digit("4"), T0)
    assert to_model(ignored) == []


def test_tool_results_are_part_of_the_conversation_a_new_session_is_given() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "book_table", '{"party_size": 2}'), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    core.tool_finished("c1", '{"booked": "19:30"}', T0 + 0.1)
    core.model_lost(1006, "", T0 + 60)
    [update] = [
        c for c in to_model(core.model_connected(under_way(core), T0 + 60.2)) if isinstance(c, ev.UpdateSession)
    ]
    assert 'book_table → {"booked": "19:30"}' in update.config.instructions


def test_an_operator_can_make_the_agent_speak_after_the_response_under_way() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    answer, queued = core.operator_say("Your table is ready.", T0)
    assert answer == Accepted()
    assert [c for c in to_model(queued) if isinstance(c, ev.CreateResponse)] == []  # not over the live one
    [say] = [
        c
        for c in to_model(core.model_event(ev.ResponseDone("r1", "completed"), T0))
        if isinstance(c, ev.CreateResponse)
    ]
    assert say.instructions is not None and say.instructions.endswith("Your table is ready.")


def test_an_operators_note_is_context_without_a_response_and_a_transfer_ends_with_a_dial() -> None:
    core = in_call()
    assert to_model(core.operator_note("VIP guest", T0)[1]) == [
        ev.CreateTextItem("system", "(A note from the human operator, not said by the caller: VIP guest)")
    ]
    [end] = of(core.operator_transfer("+15551230009", T0)[1], EndCall)
    assert (end.reason, end.farewell, end.transfer_to) == (
        EndReason.OPERATOR_TRANSFERRED,
        Farewell.TRANSFER,
        "+15551230009",
    )
    assert end.summary["reason"] == "an operator transferred the call"


def test_operator_inputs_the_call_cannot_take_are_refused_with_the_phase() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    answer, actions = core.operator_say("Hello?", T0)
    assert answer == Refused("operator_say", "awaiting_stream") and actions == [answer]
    assert [(log.event, log.fields) for log in log_lines(actions)] == [
        ("operator_say_refused", {"phase": "awaiting_stream"})
    ]
    answer, _ = core.operator_note("VIP", T0)
    assert answer == Refused("operator_note", "connecting")
