"""Turn-taking, as the core sees it (issue 16): one response at a time, a queue of reasons to answer,
failed responses asked again then apologised for, closing words always heard, the operator never over
the caller. Injected time, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from tests.core_helpers import READY, b64, log_lines, of, under_way
from tests.core_helpers import commands as to_model
from voiceagent.call import (
    CallCore,
    CallOptions,
    Digit,
    EndCall,
    EndReason,
    Farewell,
    PlayAudio,
    PlayedUpTo,
    StreamStarted,
)
from voiceagent.call.actions import Action
from voiceagent.call.responses import retry_delay
from voiceagent.realtime import events as ev

T0 = 100.0
CALL = "CA" + "2" * 32
SAY = "Your table is ready."


def in_call(options: CallOptions | None = None) -> CallCore:
    core = CallCore(options or CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    core.model_event(READY, T0)
    core.transport_event(StreamStarted(), T0)
    return core


def creates(actions: Iterable[Action]) -> list[ev.CreateResponse]:
    return [c for c in to_model(actions) if isinstance(c, ev.CreateResponse)]


def test_tool_results_and_an_operator_line_are_both_asked_for_one_after_the_other() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "lookup", "{}"), T0)
    core.model_event(ev.ResponseDone("r1", "completed"), T0)
    _, said = core.operator_say(SAY, T0 + 0.1)  # during the tool call: spoken now
    [line] = creates(said)
    assert line.instructions is not None and SAY in line.instructions
    assert creates(core.tool_finished("c1", "{}", T0 + 0.2)) == []  # the line is live: the results wait
    core.model_event(ev.ResponseCreated("r2"), T0 + 0.3)
    assert creates(core.model_event(ev.ResponseDone("r2", "completed"), T0 + 1)) == [ev.CreateResponse()]


def test_an_operator_line_waits_for_the_caller_to_finish_and_for_the_servers_answer() -> None:
    core = in_call()
    core.model_event(ev.SpeechStarted("u1", 0), T0)
    _, said = core.operator_say(SAY, T0 + 0.1)
    assert creates(said) == []  # never over the caller
    assert creates(core.model_event(ev.SpeechStopped("u1", 900), T0 + 0.5)) == []  # the server answers the turn
    assert creates(core.model_event(ev.ResponseCreated("vad1"), T0 + 0.65)) == []
    [line] = creates(core.model_event(ev.ResponseDone("vad1", "completed"), T0 + 2))
    assert line.instructions is not None and SAY in line.instructions


def test_a_caller_turn_the_server_did_not_answer_lets_the_queue_go_on_after_a_short_wait() -> None:
    core = in_call()
    core.model_event(ev.SpeechStarted("u1", 0), T0)
    core.operator_say(SAY, T0 + 0.1)
    core.model_event(ev.SpeechStopped("u1", 900), T0 + 0.5)
    due = core.next_deadline()
    assert due is not None and T0 + 0.5 < due <= T0 + 2
    assert len(creates(core.handle_timer(due))) == 1


def test_a_failed_response_is_asked_again_once_after_the_back_off_then_the_caller_hears_the_apology() -> None:
    core = in_call(CallOptions(greeting="Hello", response_retry_seconds=1.0))
    core.model_event(ev.ResponseCreated("g1"), T0)
    done = core.model_event(ev.ResponseDone("g1", "failed", detail="server_error: boom"), T0 + 0.2)
    assert creates(done) == []
    [logged] = [log for log in log_lines(done) if log.event == "response_done"]
    assert logged.level == "warning" and logged.fields["detail"] == "server_error: boom"
    assert core.next_deadline() == T0 + 1.2
    [again] = creates(core.handle_timer(T0 + 1.2))
    assert again.instructions is not None and "Hello" in again.instructions  # the same greeting
    core.model_event(ev.ResponseCreated("g2"), T0 + 1.4)
    [end] = of(core.model_event(ev.ResponseDone("g2", "failed"), T0 + 1.5), EndCall)
    assert (end.reason, end.farewell) == (EndReason.MODEL_FAILED, Farewell.UNAVAILABLE)


def test_a_try_again_hint_sets_the_back_off() -> None:
    assert retry_delay("rate_limit_exceeded: Please try again in 2.5s.", 1.0) == 2.5
    assert retry_delay("rate_limit_exceeded: try again in 300ms", 1.0) == 1.0  # never sooner than the default
    assert retry_delay("try again in 90s", 1.0) == 10.0  # capped
    assert retry_delay(None, 0.7) == 0.7


def test_an_incomplete_response_is_logged_and_not_asked_again() -> None:
    core = in_call()
    core.model_event(ev.ResponseCreated("r1"), T0)
    done = core.model_event(ev.ResponseDone("r1", "incomplete", detail="max_output_tokens"), T0)
    assert creates(done) == [] and core.next_deadline() is None
    assert [log.level for log in log_lines(done) if log.event == "response_done"] == ["warning"]


def test_a_refused_request_is_an_error_of_ours_and_what_it_was_for_is_asked_again() -> None:
    core = in_call()
    core.operator_say(SAY, T0)
    refused = core.model_event(ev.ModelError("conversation_already_has_active_response", "busy", routine=True), T0)
    assert [(log.level, log.event) for log in log_lines(refused)] == [("error", "response_refused")]
    core.model_event(ev.ResponseCreated("other"), T0 + 0.1)  # the one that was active after all
    [again] = creates(core.model_event(ev.ResponseDone("other", "completed"), T0 + 2))
    assert again.instructions is not None and SAY in again.instructions


def test_a_cancelled_end_call_leaves_the_call_up_and_the_callers_turn_is_answered() -> None:
    core = in_call(CallOptions(end_call_tool=True))
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "end_call", "{}"), T0)
    core.model_event(ev.SpeechStarted("u1", 0), T0 + 0.1)  # "wait, one more thing"
    done = core.model_event(ev.ResponseDone("r1", "cancelled"), T0 + 0.1)
    assert of(done, EndCall) == [] and core.phase.name == "IN_CALL"
    assert [c.output for c in to_model(done) if isinstance(c, ev.FunctionOutput)] == [
        '{"error": "not carried out: the response was cancelled"}'
    ]
    assert creates(done) == []  # the caller's turn gets the answer


def test_a_wordless_end_call_asks_for_a_goodbye_and_hangs_up_once_it_is_heard() -> None:
    core = in_call(CallOptions(end_call_tool=True, goodbye_grace_seconds=20))
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "end_call", "{}"), T0)
    done = core.model_event(ev.ResponseDone("r1", "completed"), T0)
    [goodbye] = creates(done)
    assert goodbye.instructions is not None and "goodbye" in goodbye.instructions
    assert of(done, EndCall) == []
    core.model_event(ev.ResponseCreated("r2"), T0 + 0.2)
    [play] = of(core.model_event(ev.AudioDelta("r2", "bye", b64(800)), T0 + 0.3), PlayAudio)
    core.model_event(ev.ResponseDone("r2", "completed"), T0 + 0.4)
    [end] = of(core.transport_event(PlayedUpTo("bye", play.end), T0 + 0.5), EndCall)
    assert end.reason is EndReason.AGENT_HUNG_UP


def test_a_wordless_transfer_asks_for_a_hand_over_line_bounded_by_the_goodbye_grace() -> None:
    core = in_call(CallOptions(transfer_targets={"": "+15551230001"}, goodbye_grace_seconds=5))
    core.model_event(ev.ResponseCreated("r1"), T0)
    core.model_event(ev.FunctionCall("r1", "c1", "transfer_call", "{}"), T0)
    [hand_over] = creates(core.model_event(ev.ResponseDone("r1", "completed"), T0))
    assert hand_over.instructions is not None and "putting them through" in hand_over.instructions
    assert core.next_deadline() == T0 + 5
    [end] = of(core.handle_timer(T0 + 5), EndCall)  # the model never answered: the transfer goes ahead
    assert (end.farewell, end.transfer_to) == (Farewell.TRANSFER, "+15551230001")


def test_keypad_entries_and_operator_notes_survive_a_session_replacement() -> None:
    core = in_call(CallOptions(dtmf_to_model=True))
    for key in "12#":
        core.transport_event(Digit(key), T0)
    core.operator_note("VIP guest", T0)
    core.model_lost(1006, "", T0 + 60)
    [update] = [
        c for c in to_model(core.model_connected(under_way(core), T0 + 60.2)) if isinstance(c, ev.UpdateSession)
    ]
    assert "(keyed 12#)" in update.config.instructions and "VIP guest" in update.config.instructions


def test_the_no_answer_guard_covers_a_request_never_created_and_a_response_never_done() -> None:
    guarded = CallOptions(greeting="Hello", answer_timeout_seconds=15, response_done_seconds=60)
    never_created = in_call(guarded)  # the greeting was asked for at T0
    assert never_created.next_deadline() == T0 + 15
    [end] = of(never_created.handle_timer(T0 + 15), EndCall)
    assert (end.reason, end.farewell) == (EndReason.MODEL_UNRESPONSIVE, Farewell.UNAVAILABLE)
    never_done = in_call(guarded)
    never_done.model_event(ev.ResponseCreated("g1"), T0 + 1)
    assert never_done.next_deadline() == T0 + 61
    waited = never_done.handle_timer(T0 + 61)
    assert [log.fields for log in log_lines(waited) if log.event == "model_unresponsive"] == [
        {"waiting_for": "response"}
    ]
