"""The core's contract with its driver: connect attempts named by id, phase moves from a declared table,
and observations that log as the lines they replace."""

from __future__ import annotations

import pytest

from tests.core_helpers import READY, log_lines, of
from voiceagent.call import (
    BargeIn,
    CallCore,
    CallCoreError,
    CallOptions,
    CallPhase,
    ConnectModel,
    ConnectPurpose,
    EndCall,
    EndReason,
    Farewell,
    ModelPhase,
    StreamStarted,
    ToolCalled,
    log_line,
)
from voiceagent.call.phases import CALL_MOVES, MODEL_MOVES, checked_move
from voiceagent.realtime import events as ev

T0 = 100.0
CALL = "CA" + "1" * 32


def test_each_connect_attempt_has_its_own_id_and_the_reply_must_name_it() -> None:
    core = CallCore(CallOptions(connect_attempts=3, retry_delay_seconds=0.5), call_sid=CALL, now=T0)
    [first] = of(core.start(T0), ConnectModel)
    assert first == ConnectModel(1, ConnectPurpose.FIRST)
    with pytest.raises(CallCoreError):
        core.model_connected(2, T0)  # never made
    core.model_connect_failed(1, "HTTP 503", T0)
    with pytest.raises(CallCoreError):
        core.model_connect_failed(1, "HTTP 503", T0)  # answered already
    due = core.next_deadline()
    assert due is not None
    [second] = of(core.handle_timer(due), ConnectModel)
    assert second == ConnectModel(2, ConnectPurpose.FIRST)
    core.model_connected(2, due)
    assert core.model_phase is ModelPhase.CONFIGURING


def test_a_reply_after_the_call_ended_is_still_checked_and_the_session_dropped() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.end(EndReason.SHUTDOWN, "the service is shutting down", T0)
    with pytest.raises(CallCoreError):
        core.model_connected(7, T0)
    assert [type(action).__name__ for action in core.model_connected(1, T0)] == ["DropNewModel"]


def test_phase_moves_outside_the_tables_raise() -> None:
    with pytest.raises(CallCoreError, match="ENDED -> IN_CALL"):
        checked_move(CALL_MOVES, CallPhase.ENDED, CallPhase.IN_CALL)
    with pytest.raises(CallCoreError):
        checked_move(MODEL_MOVES, ModelPhase.RETRY_WAIT, ModelPhase.READY)
    assert set(CALL_MOVES) == set(CallPhase) and set(MODEL_MOVES) == set(ModelPhase)
    assert checked_move(CALL_MOVES, CallPhase.AWAITING_STREAM, CallPhase.IN_CALL) is CallPhase.IN_CALL


def test_a_call_ends_with_a_reason_from_the_closed_set_and_its_words() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(1, T0)
    core.model_event(READY, T0)
    core.transport_event(StreamStarted(), T0)
    actions = core.model_event(ev.SessionRejected("x", "no"), T0)
    [ended] = [line for line in log_lines(actions) if line.event == "call_ended"]
    [end] = of(actions, EndCall)
    assert (end.reason, end.farewell) == (EndReason.MODEL_REFUSED, Farewell.UNAVAILABLE)
    assert end.detail == "the model refused the session: no"
    assert ended.fields["reason"] == end.detail  # the log line and the record keep the words


def test_observations_log_as_the_lines_they_replace() -> None:
    cut = log_line(BargeIn("item_1", 120, 900))
    assert (cut.level, cut.event) == ("info", "barge_in")
    assert cut.fields == {"item_id": "item_1", "heard_ms": 120, "produced_ms": 900}
    gone = log_line(BargeIn("item_1", 120, None))
    assert gone.fields == {"item_id": "item_1", "heard_ms": 120, "previous_session": True}
    failed = log_line(ToolCalled("book_table", False, 30, "timeout"))
    assert failed.fields == {"name": "book_table", "ok": False, "duration_ms": 30, "error": "timeout"}
