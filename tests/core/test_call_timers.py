"""The core's time-driven decisions, with injected time: limits, goodbyes, retries, recycling, pre-warm.

Every test asks the core when it next wants to be woken (``next_deadline``) and wakes it then, the way
the driver does, so a deadline the core forgot to announce fails here.
"""

from __future__ import annotations

import base64

from tests.core_helpers import ANY_ATTEMPT, READY, log_lines, of, under_way
from voiceagent.call import (
    Action,
    CallCore,
    CallerAudio,
    CallOptions,
    ConnectModel,
    ConnectPurpose,
    EndCall,
    EndReason,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    SendToModel,
    StreamStarted,
)
from voiceagent.realtime import events as ev

T0 = 100.0
CALL = "CA" + "1" * 32


def asks_goodbye(actions: list[Action]) -> bool:
    return any(
        isinstance(a, SendToModel) and isinstance(a.command, ev.CreateResponse) and "goodbye" in str(a.command)
        for a in actions
    )


def in_call(options: CallOptions) -> CallCore:
    core = CallCore(options, call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    core.model_event(READY, T0)
    core.transport_event(StreamStarted(), T0)
    return core


def wake(core: CallCore) -> tuple[float, list[Action]]:
    """Wake the core at its next deadline, as the driver would."""
    due = core.next_deadline()
    assert due is not None, "the core announced no deadline"
    return due, core.handle_timer(due)


def say_goodbye(core: CallCore, now: float) -> list[Action]:
    """The model speaks the goodbye it was asked for; returns what the caller hearing its end causes."""
    core.model_event(ev.ResponseCreated("r_bye"), now)
    [play] = of(
        core.model_event(ev.AudioDelta("r_bye", "bye", base64.b64encode(b"\x55" * 800).decode()), now), PlayAudio
    )
    core.model_event(ev.AgentTranscriptDone("bye", "Goodbye!"), now)
    assert of(core.model_event(ev.ResponseDone("r_bye", "completed"), now), EndCall) == []  # still playing
    return core.transport_event(PlayedUpTo("bye", play.end), now)


def test_the_maximum_length_asks_for_a_goodbye_then_ends_once_it_was_heard() -> None:
    core = in_call(CallOptions(max_call_seconds=60))
    assert core.next_deadline() == T0 + 60
    assert core.handle_timer(T0 + 59) == []
    due, actions = wake(core)
    assert due == T0 + 60 and asks_goodbye(actions)
    final = say_goodbye(core, due + 1)
    assert of(final, EndCall) == [EndCall(EndReason.MAX_LENGTH, "the call reached its maximum length")]
    assert [a.line.text for a in of(final, RecordLine)] == ["Goodbye!"]


def test_the_goodbye_waits_for_a_live_response_to_finish() -> None:
    core = in_call(CallOptions(max_call_seconds=10))
    core.model_event(ev.ResponseCreated("r1"), T0)
    _, actions = wake(core)
    assert not asks_goodbye(actions)
    assert asks_goodbye(core.model_event(ev.ResponseDone("r1", "completed"), T0 + 11))


def test_caller_silence_is_counted_from_the_last_activity_and_ends_the_call_politely() -> None:
    core = in_call(CallOptions(caller_silence_seconds=30))
    core.model_event(ev.SpeechStarted("u", 0), T0 + 5)
    assert core.next_deadline() is None  # the caller is talking: no silence to time
    core.model_event(ev.SpeechStopped("u", 900), T0 + 20)
    due, actions = wake(core)
    assert due == T0 + 50 and asks_goodbye(actions)


def test_silence_is_not_counted_while_the_agent_is_audible() -> None:
    core = in_call(CallOptions(caller_silence_seconds=5))
    [play] = of(core.model_event(ev.AudioDelta("r", "long", base64.b64encode(b"\x55" * 8000).decode()), T0), PlayAudio)
    assert core.next_deadline() is None
    assert core.handle_timer(T0 + 100) == []
    core.transport_event(PlayedUpTo("long", play.end), T0 + 101)  # heard: silence starts now
    assert core.next_deadline() == T0 + 106


def test_a_goodbye_that_never_finishes_is_cut_at_the_grace_deadline() -> None:
    core = in_call(CallOptions(max_call_seconds=10, goodbye_grace_seconds=5))
    wake(core)
    due, actions = wake(core)
    assert due == T0 + 15 and of(actions, EndCall) == [
        EndCall(EndReason.MAX_LENGTH, "the call reached its maximum length")
    ]


def test_winding_down_before_the_session_is_ready_ends_at_once() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    assert of(core.wind_down(EndReason.SHUTDOWN, "the service is shutting down", T0), EndCall)


def test_a_prewarmed_session_without_a_stream_is_given_up() -> None:
    core = CallCore(CallOptions(stream_wait_seconds=10), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0 + 0.2)
    core.model_event(READY, T0 + 0.3)
    due, actions = wake(core)
    assert due == T0 + 10
    assert of(actions, EndCall) == [EndCall(EndReason.NO_STREAM, "no media stream arrived for the pre-warmed session")]


def test_a_stream_in_time_keeps_the_prewarmed_session() -> None:
    core = CallCore(CallOptions(stream_wait_seconds=10), call_sid=CALL, now=T0)
    core.start(T0)
    core.transport_event(StreamStarted(), T0 + 9.9)
    assert core.next_deadline() is None and core.handle_timer(T0 + 10) == []


# ---------------------------------------------------------------- connecting


def test_failed_connects_back_off_exponentially_then_the_caller_hears_the_apology() -> None:
    core = CallCore(CallOptions(connect_attempts=3, retry_delay_seconds=0.5), call_sid=CALL, now=T0)
    core.start(T0)
    assert of(core.model_connect_failed(under_way(core), "HTTP 503", T0), ConnectModel) == []
    first, actions = wake(core)
    assert T0 + 0.5 <= first <= T0 + 0.5 * 1.25  # back-off with up to 25 % jitter
    assert of(actions, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.FIRST)]
    core.model_connect_failed(under_way(core), "HTTP 503", first)
    second, actions = wake(core)
    assert first + 1.0 <= second <= first + 1.25 and of(actions, ConnectModel)
    actions = core.model_connect_failed(under_way(core), "HTTP 503", second)
    [end] = of(actions, EndCall)
    assert end.model_unreachable and end.detail == "the model could not be reached"
    assert [log.fields["attempt"] for log in log_lines(actions) if log.event == "model_connect_failed"] == [3]


def test_a_lost_session_is_replaced_and_the_conversation_replayed_without_a_second_greeting() -> None:
    core = in_call(CallOptions(greeting="Hi"))
    core.model_event(ev.CallerTranscript("u1", "A table for two, please."), T0)
    [play] = of(core.model_event(ev.AudioDelta("r", "a1", base64.b64encode(b"\x55" * 800).decode()), T0), PlayAudio)
    core.model_event(ev.AgentTranscriptDone("a1", "Certainly."), T0)
    core.model_event(ev.AudioDone("r", "a1"), T0)
    core.transport_event(PlayedUpTo("a1", play.end), T0)
    core.model_event(ev.AudioDelta("r2", "a2", base64.b64encode(b"\x55" * 800).decode()), T0)  # still playing
    lost = core.model_lost(1001, "Your session hit the maximum duration", T0 + 1800)
    assert of(lost, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECONNECT)]
    [update] = [a.command for a in of(core.model_connected(under_way(core), T0 + 1800.2), SendToModel)]
    assert isinstance(update, ev.UpdateSession)  # the conversation goes in the prompt, not as items
    assert "Caller: A table for two, please.\nYou: Certainly." in update.config.instructions
    assert [a for a in core.model_event(READY, T0 + 1800.3) if isinstance(a, SendToModel)] == []  # no greeting
    # the caller talks over the old session's audio: cleared, but the new session is not asked to truncate
    actions = core.model_event(ev.SpeechStarted("u2", 0), T0 + 1800.4)
    assert [a for a in of(actions, SendToModel) if isinstance(a.command, ev.Truncate)] == []
    assert of(actions, RecordLine)[0].line.interrupted


def test_the_session_is_recycled_at_the_first_quiet_moment_after_the_interval() -> None:
    core = in_call(CallOptions(recycle_seconds=60))
    core.model_event(ev.SpeechStarted("u", 0), T0 + 59)
    assert core.handle_timer(T0 + 61) == []  # due, but the caller is talking
    actions = core.model_event(ev.SpeechStopped("u", 900), T0 + 62)
    assert of(actions, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECYCLE)]
    assert core.next_deadline() is None  # one recycle at a time
    replayed = core.model_connected(under_way(core), T0 + 62.5)
    assert isinstance(of(replayed, SendToModel)[0].command, ev.UpdateSession)
    core.model_event(READY, T0 + 62.6)
    assert core.next_deadline() == T0 + 62.5 + 60


def test_a_failed_recycle_keeps_the_session_and_tries_again_an_interval_later() -> None:
    core = in_call(CallOptions(recycle_seconds=60))
    _, actions = wake(core)
    assert of(actions, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECYCLE)]
    actions = core.model_connect_failed(under_way(core), "HTTP 429", T0 + 60.5)
    assert of(actions, EndCall) == [] and core.next_deadline() == T0 + 120.5


def test_talking_over_a_finished_goodbye_hangs_up_at_once() -> None:
    core = in_call(CallOptions(max_call_seconds=10))
    wake(core)
    core.model_event(ev.ResponseCreated("r_bye"), T0 + 10)
    core.model_event(ev.AudioDelta("r_bye", "bye", base64.b64encode(b"\x55" * 8000).decode()), T0 + 10)
    core.model_event(ev.ResponseDone("r_bye", "completed"), T0 + 10)
    actions = core.model_event(ev.SpeechStarted("u", 0), T0 + 10.5)
    assert of(actions, EndCall) == [EndCall(EndReason.MAX_LENGTH, "the call reached its maximum length")]


# ---------------------------------------------------------------- broken and hostile peers


def test_a_model_that_accepts_and_hangs_up_is_not_redialled_in_a_loop() -> None:
    core = in_call(CallOptions(connect_attempts=3, retry_delay_seconds=0.5))
    now = T0 + 0.1
    connects = 1
    for _ in range(10):
        actions = core.model_lost(1000, "bye", now)  # it confirmed the session, then went at once
        if of(actions, EndCall):
            break
        now, actions = wake(core)
        connects += len(of(actions, ConnectModel))
        core.model_connected(under_way(core), now)
        core.model_event(READY, now)
        now += 0.1
    assert connects == 3 and of(actions, EndCall)[0].model_unreachable


def test_connects_per_minute_are_capped_per_call() -> None:
    core = in_call(CallOptions(max_connects_per_minute=3, connect_attempts=10))
    now = T0 + 30
    for _ in range(2):  # two long-lived sessions lost: reconnect at once
        assert of(core.model_lost(1001, "cap", now), ConnectModel)
        core.model_connected(under_way(core), now)
        core.model_event(READY, now)
        now += 11
    actions = core.model_lost(1001, "cap", now)
    assert of(actions, ConnectModel) == [] and log_lines(actions)[-1].event == "model_connects_rate_limited"
    due, actions = wake(core)
    assert due == T0 + 60 and of(actions, ConnectModel)  # when the first connect leaves the window


def test_a_stream_that_stops_sending_audio_is_over() -> None:
    core = in_call(CallOptions(stream_silence_seconds=5))
    core.transport_event(CallerAudio(base64.b64encode(bytes(160)).decode(), 160), T0 + 1)
    due, actions = wake(core)
    assert due == T0 + 6 and of(actions, EndCall) == [
        EndCall(EndReason.STREAM_SILENT, "the media stream stopped sending audio")
    ]


def test_reports_that_never_come_do_not_keep_the_agent_speaking_forever() -> None:
    core = in_call(CallOptions(caller_silence_seconds=30, playback_report_grace_seconds=2))
    core.model_event(ev.AudioDelta("r", "a", base64.b64encode(b"\x55" * 8000).decode()), T0)  # 1 s
    core.model_event(ev.AgentTranscriptDone("a", "Hello."), T0)
    core.model_event(ev.ResponseDone("r", "completed"), T0)
    due, actions = wake(core)
    assert due == T0 + 1 + 2 and [a.line.text for a in of(actions, RecordLine)] == ["Hello."]
    assert core.next_deadline() == T0 + 30  # silence counts again (from the last activity)


def test_caller_audio_far_faster_than_real_time_is_dropped_and_counted() -> None:
    core = in_call(CallOptions(caller_audio_pace=1.25, warnings_per_kind=1))
    frame = base64.b64encode(bytes(160)).decode()
    forwarded = 0
    for n in range(500):  # 10 s of audio in 1 s
        forwarded += len(of(core.transport_event(CallerAudio(frame, 160), T0 + n * 0.002), SendToModel))
    assert 160 <= forwarded <= 164  # 2 s of burst + 1 s at 1.25 × real time
    [summary] = [
        log for log in log_lines(core.end(EndReason.OPERATOR_HUNG_UP, "test", T0 + 1)) if log.event == "call_ended"
    ]
    assert summary.fields["caller_bytes_dropped"] == (500 - forwarded) * 160
    assert summary.fields["warnings_not_logged"] == {"caller_audio_too_fast": 500 - forwarded - 1}


def test_a_model_that_never_answers_a_finished_turn_ends_the_call_with_the_apology() -> None:
    core = in_call(CallOptions(answer_timeout_seconds=8))
    core.model_event(ev.SpeechStarted("u", 0), T0 + 1)
    core.model_event(ev.SpeechStopped("u", 900), T0 + 2)
    due, actions = wake(core)
    assert due == T0 + 10 and of(actions, EndCall)[0].model_unreachable
    assert [log.event for log in log_lines(actions)][0] == "model_unresponsive"
