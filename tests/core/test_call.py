"""The call core, driven with plain lists of inputs and injected time: no sockets, no clocks, no Twilio."""

from __future__ import annotations

from typing import Any

from tests.core_helpers import ANY_ATTEMPT, READY, b64, log_lines, of, under_way
from tests.core_helpers import commands as to_model
from voiceagent.call import (
    Action,
    BadInput,
    CallCore,
    CallerAudio,
    CallerHungUp,
    CallOptions,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    Digit,
    EndCall,
    EndReason,
    Log,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    StreamStarted,
)
from voiceagent.call.transcript import heard_words
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev

T0 = 100.0
CALL = "CA" + "1" * 32


def lines(actions: list[Action]) -> list[Any]:
    return [action.line for action in of(actions, RecordLine)]


def logs(actions: list[Action], event: str) -> list[Log]:
    return [log for log in log_lines(actions) if log.event == event]


def ready(options: CallOptions | None = None, *, stream: bool = True) -> CallCore:
    """A core whose first model session is configured and (by default) whose stream has started."""
    core = CallCore(options or CallOptions(), call_sid=CALL, now=T0)
    assert of(core.start(T0), ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.FIRST)]
    core.model_connected(under_way(core), T0)
    core.model_event(READY, T0)
    if stream:
        core.transport_event(StreamStarted(), T0)
    return core


def deliver(core: CallCore, item: str, sizes: list[int], response: str = "r1", now: float = T0) -> list[PlayAudio]:
    plays = []
    for size in sizes:
        [play] = of(core.model_event(ev.AudioDelta(response, item, b64(size)), now), PlayAudio)
        plays.append(play)
    return plays


# ---------------------------------------------------------------- audio both ways


def test_caller_audio_passes_through_untouched_once_the_session_is_ready() -> None:
    core = ready()
    assert to_model(core.transport_event(CallerAudio(b64(160, 0x7F), 160), T0)) == [ev.AppendAudio(b64(160, 0x7F))]


def test_caller_audio_before_the_session_is_ready_is_kept_and_delivered_in_order() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.transport_event(StreamStarted(), T0)
    assert core.transport_event(CallerAudio(b64(160, 1), 160), T0) == []  # connecting
    core.model_connected(under_way(core), T0 + 0.3)
    assert core.transport_event(CallerAudio(b64(160, 2), 160), T0 + 0.4) == []  # not confirmed yet
    delivered = to_model(core.model_event(READY, T0 + 0.5))
    assert delivered == [ev.AppendAudio(b64(160, 1)), ev.AppendAudio(b64(160, 2))]


def test_the_caller_backlog_is_bounded_keeps_the_latest_audio_and_says_what_it_dropped() -> None:
    core = CallCore(CallOptions(caller_backlog_seconds=0.05), call_sid=CALL, now=T0)  # 400 bytes
    core.start(T0)
    for fill in range(1, 5):
        core.transport_event(CallerAudio(b64(160, fill), 160), T0)
    core.model_connected(under_way(core), T0)
    actions = core.model_event(READY, T0)
    assert to_model(actions) == [ev.AppendAudio(b64(160, 3)), ev.AppendAudio(b64(160, 4))]
    assert logs(actions, "caller_audio_dropped")[0].fields["ms"] == 40
    [summary] = logs(core.end(EndReason.OPERATOR_HUNG_UP, "test", T0), "call_ended")
    assert summary.fields["caller_bytes_dropped"] == 320


def test_each_delta_is_played_with_its_end_offset_and_the_payload_untouched() -> None:
    core = ready()
    first, second = deliver(core, "item_a", [800, 320])
    assert first == PlayAudio("item_a", b64(800), 800)
    assert second.end == 1120 and second.payload == b64(320)


def test_audio_before_the_stream_starts_is_held_then_played_in_order() -> None:
    core = ready(CallOptions(greeting="Hi"), stream=False)
    assert core.model_event(ev.AudioDelta("r", "g", b64(160, 1)), T0) == []
    assert core.model_event(ev.AudioDelta("r", "g", b64(160, 2)), T0) == []
    plays = of(core.transport_event(StreamStarted(), T0 + 1), PlayAudio)
    assert [(p.payload, p.end) for p in plays] == [(b64(160, 1), 160), (b64(160, 2), 320)]


# ---------------------------------------------------------------- the session


def test_the_session_is_configured_on_connect_and_the_greeting_asked_once_it_is_ready() -> None:
    options = CallOptions(greeting="Hello from the bistro")
    core = CallCore(options, call_sid=CALL, now=T0)
    core.start(T0)
    assert to_model(core.model_connected(under_way(core), T0)) == [ev.UpdateSession(options.session)]
    expected = greeting_instructions(options.session.instructions, "Hello from the bistro")
    assert to_model(core.model_event(READY, T0)) == [ev.CreateResponse(expected)]
    assert to_model(core.model_event(READY, T0)) == []  # a second session.updated asks nothing


def test_no_greeting_configured_waits_for_the_caller() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    assert to_model(core.model_event(READY, T0)) == []


def test_a_model_that_will_not_speak_ulaw_ends_the_call() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    actions = core.model_event(ev.SessionUpdated(ev.PCMU, "audio/pcm"), T0)
    [end] = of(actions, EndCall)
    assert "μ-law" in end.detail and not end.model_unreachable
    assert logs(actions, "model_audio_format_refused")[0].level == "error"


# ---------------------------------------------------------------- barge-in


def test_barge_in_clears_and_truncates_at_what_the_caller_heard() -> None:
    core = ready()
    core.model_event(ev.ResponseCreated("r1"), T0)
    deliver(core, "item_a", [800, 800, 800])  # 300 ms produced
    core.transport_event(PlayedUpTo("item_a", 800), T0)  # 100 ms heard
    actions = core.model_event(ev.SpeechStarted("item_user", 5000), T0)
    assert of(actions, ClearPlayback) == [ClearPlayback()]
    assert to_model(actions) == [ev.Truncate("item_a", 100)]  # the server cancels its own response
    [line] = lines(actions)
    assert line.role == "agent" and line.interrupted and line.heard_ms == 100


def test_barge_in_never_truncates_past_what_the_model_produced() -> None:
    core = ready()
    deliver(core, "item_a", [803])  # an odd byte count: 100.375 ms
    core.transport_event(PlayedUpTo("item_a", 10_000), T0)  # a report past what was sent counts as what was sent
    core.model_event(ev.AudioDelta("r1", "item_a", b64(800)), T0)
    assert to_model(core.model_event(ev.SpeechStarted("u", 0), T0)) == [ev.Truncate("item_a", 803 // 8)]


def test_no_truncate_when_everything_was_played_or_nothing_was_audio() -> None:
    core = ready()
    [play] = deliver(core, "item_a", [1600])
    core.model_event(ev.AudioDone("r1", "item_a"), T0)
    core.transport_event(PlayedUpTo("item_a", play.end), T0)
    core.model_event(ev.AgentTranscriptDelta("item_b", "Hel"), T0)
    assert core.model_event(ev.SpeechStarted("u", 0), T0) == []


def test_cancel_only_when_the_server_will_not_cancel_itself() -> None:
    core = ready(CallOptions(server_interrupts=False))
    core.model_event(ev.ResponseCreated("r1"), T0)
    deliver(core, "item_a", [800])
    assert ev.CancelResponse() in to_model(core.model_event(ev.SpeechStarted("u", 0), T0))

    core = ready(CallOptions(server_interrupts=False))
    deliver(core, "item_a", [800])  # no response live: nothing to cancel
    assert ev.CancelResponse() not in to_model(core.model_event(ev.SpeechStarted("u", 0), T0))


def test_late_deltas_of_a_truncated_item_are_dropped_and_a_second_speech_start_cuts_nothing() -> None:
    core = ready()
    deliver(core, "item_a", [800])
    core.model_event(ev.SpeechStarted("u1", 0), T0)
    assert core.model_event(ev.AudioDelta("r1", "item_a", b64(800)), T0) == []
    assert core.model_event(ev.SpeechStarted("u2", 100), T0) == []
    assert len(deliver(core, "item_b", [400], "r2")) == 1  # a new item after the interruption plays


# ---------------------------------------------------------------- transcripts


def test_an_agent_line_is_recorded_once_it_was_heard_in_full() -> None:
    core = ready()
    first, second = deliver(core, "item_a", [800, 800])
    core.model_event(ev.AgentTranscriptDelta("item_a", "Hello "), T0)
    core.model_event(ev.AudioDone("r1", "item_a"), T0)
    assert lines(core.model_event(ev.AgentTranscriptDone("item_a", "Hello there."), T0)) == []
    assert lines(core.transport_event(PlayedUpTo("item_a", first.end), T0)) == []  # still playing
    [line] = lines(core.transport_event(PlayedUpTo("item_a", second.end), T0))
    assert (line.call_sid, line.role, line.text, line.interrupted, line.heard_ms) == (
        CALL,
        "agent",
        "Hello there.",
        False,
        None,
    )


def test_caller_lines_come_from_input_transcription() -> None:
    core = ready()
    [line] = lines(core.model_event(ev.CallerTranscript("item_u", " Book a table. "), T0))
    assert (line.role, line.text, line.interrupted) == ("caller", "Book a table.", False)
    assert lines(core.model_event(ev.CallerTranscript("item_v", "  "), T0)) == []


def test_the_end_records_a_line_still_playing_as_interrupted_and_sums_the_call_up() -> None:
    core = ready()
    first, _ = deliver(core, "item_a", [800, 800], now=T0 + 0.25)
    core.model_event(ev.AgentTranscriptDone("item_a", "Two tables."), T0)
    core.model_event(ev.ResponseDone("r1", "completed", {"input_tokens": 5, "output_tokens": 7}), T0)
    core.transport_event(PlayedUpTo("item_a", first.end), T0)
    actions = core.transport_event(CallerHungUp("caller hung up"), T0 + 3)
    [line] = lines(actions)
    assert line.interrupted and line.heard_ms == 100
    [summary] = logs(actions, "call_ended")
    assert summary.fields["reason"] == "caller hung up"
    assert summary.fields["duration_s"] == 3.0 and summary.fields["first_audio_ms"] == 250
    assert summary.fields["input_tokens"] == 5 and summary.fields["output_tokens"] == 7
    assert summary.fields["bytes_out"] == 1600 and summary.fields["model_sessions"] == 1
    assert of(actions, EndCall) == [EndCall(EndReason.CALLER_HUNG_UP, "caller hung up")]
    assert core.transport_event(CallerHungUp(), T0 + 4) == []  # over is over


def test_turn_latency_is_from_the_caller_stopping_to_the_first_agent_audio() -> None:
    core = ready()
    core.model_event(ev.SpeechStarted("u", 0), T0 + 1)
    core.model_event(ev.SpeechStopped("u", 900), T0 + 2)
    deliver(core, "a", [160], now=T0 + 2.4)
    deliver(core, "a", [160], now=T0 + 2.9)  # later deltas of the same turn do not count
    [summary] = logs(core.end(EndReason.OPERATOR_HUNG_UP, "test", T0 + 5), "call_ended")
    assert summary.fields["turns"] == 1 and summary.fields["turn_latency_ms_median"] == 400


# ---------------------------------------------------------------- the transport's odd moments


def test_keypad_digits_never_reach_a_log_line() -> None:
    core = ready()
    actions = core.transport_event(Digit("7"), T0)
    assert "7" not in repr(actions)


def test_bad_input_is_counted_and_ends_the_call_at_the_limit() -> None:
    core = ready(CallOptions(max_bad_inputs=3))
    for count in (1, 2):
        [log] = core.transport_event(BadInput("not JSON"), T0)
        assert isinstance(log, Log)
        assert log.fields == {"reason": "not JSON", "count": count}
    actions = core.transport_event(BadInput("not JSON"), T0)
    assert of(actions, EndCall) == [EndCall(EndReason.BAD_INPUT, "too many malformed messages on the media stream")]


def test_a_second_stream_start_is_bad_input() -> None:
    core = ready()
    assert logs(core.transport_event(StreamStarted(), T0), "transport_bad_input")


def test_model_errors_are_logged_at_the_level_the_dialect_gave_them_and_never_end_the_call() -> None:
    core = ready()
    routine = core.model_event(ev.ModelError("response_cancel_not_active", "…", routine=True), T0)
    other = core.model_event(ev.ModelError("server_error", "boom"), T0)
    assert [log.level for log in log_lines(routine + other)] == ["warning", "error"]
    assert of(routine + other, EndCall) == []


# ---------------------------------------------------------------- against the real services' habits


def test_barge_in_within_a_long_delta_is_accurate_to_the_clock_not_the_delta() -> None:
    core = ready()
    deliver(core, "a", [8000], now=T0)  # one 1 s delta, sent at T0: the caller hears it from then
    [truncate] = [
        c for c in to_model(core.model_event(ev.SpeechStarted("u", 0), T0 + 0.3)) if isinstance(c, ev.Truncate)
    ]
    assert truncate == ev.Truncate("a", 300)


def test_the_estimate_starts_from_the_last_report_and_stops_at_the_end_of_the_chunk_playing() -> None:
    core = ready()
    first, second = deliver(core, "a", [800, 4000], now=T0)  # 100 ms then 500 ms, both buffered at once
    core.transport_event(PlayedUpTo("a", first.end), T0 + 0.12)  # the first chunk's mark came back late
    truncate = to_model(core.model_event(ev.SpeechStarted("u", 0), T0 + 0.32))
    assert ev.Truncate("a", 100 + 200) in truncate  # 200 ms since the report, not since the send

    core = ready()
    deliver(core, "a", [800], now=T0)
    assert ev.Truncate("a", 100) in to_model(core.model_event(ev.SpeechStarted("u", 0), T0 + 5))  # never past it


def test_nothing_is_played_and_nothing_is_asked_before_the_session_is_confirmed() -> None:
    core = CallCore(CallOptions(greeting="Hi"), call_sid=CALL, now=T0)
    core.start(T0)
    core.transport_event(StreamStarted(), T0)
    actions = core.model_connected(under_way(core), T0)
    assert [type(c) for c in to_model(actions)] == [ev.UpdateSession]
    audio = core.model_event(ev.AudioDelta("r", "x", b64(800)), T0)
    assert of(audio, PlayAudio) == [] and logs(audio, "model_audio_before_session_ready")


def test_a_rejected_session_update_ends_the_call_with_the_apology_and_the_servers_words() -> None:
    core = CallCore(CallOptions(), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    actions = core.model_event(ev.SessionRejected("invalid_value", "Invalid value: 'nova'. Supported: alloy"), T0)
    [end] = of(actions, EndCall)
    assert end.model_unreachable and "nova" in end.detail
    assert logs(actions, "model_session_rejected")[0].level == "error"


def test_a_session_never_confirmed_ends_the_call_with_the_apology() -> None:
    core = CallCore(CallOptions(session_ready_seconds=5), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0 + 1)
    assert core.next_deadline() == T0 + 6
    actions = core.handle_timer(T0 + 6)
    assert of(actions, EndCall)[0].model_unreachable and logs(actions, "model_session_unconfirmed")


def test_an_answer_in_text_is_logged_and_speech_asked_for_again_once() -> None:
    core = ready()
    for attempt in range(2):
        core.model_event(ev.ResponseCreated(f"r{attempt}"), T0)
        core.model_event(ev.TextDelta(f"r{attempt}", "t", "Your table is booked."), T0)
        actions = core.model_event(ev.ResponseDone(f"r{attempt}", "completed"), T0)
        assert logs(actions, "model_answered_in_text")[0].fields["text"] == "Your table is booked."
        retry = [type(c) for c in to_model(actions)]
        assert retry == ([ev.UpdateSession, ev.CreateResponse] if attempt == 0 else [])


def test_a_failed_transcription_keeps_the_turn_in_the_transcript_and_is_counted() -> None:
    core = ready()
    actions = core.model_event(ev.CallerTranscriptFailed("u", "The model 'whisper-1' does not exist"), T0)
    assert logs(actions, "caller_transcription_failed")[0].fields["error"].startswith("The model")
    [line] = lines(actions)
    assert (line.role, line.text) == ("caller", "(unintelligible)")
    [summary] = logs(core.end(EndReason.OPERATOR_HUNG_UP, "test", T0), "call_ended")
    assert summary.fields["transcription_failures"] == 1


def test_a_failed_response_is_logged_with_its_reason() -> None:
    core = ready()
    [log] = logs(core.model_event(ev.ResponseDone("r", "failed", None, "server_error: boom"), T0), "response_done")
    assert log.level == "warning" and log.fields["detail"] == "server_error: boom"


def test_the_greeting_and_the_goodbye_keep_the_operators_prompt() -> None:
    session = ev.SessionConfig(instructions="Tu es l'assistant du Bistro. Réponds en français.", voice="alloy")
    core = CallCore(CallOptions(session=session, greeting="Bonjour !"), call_sid=CALL, now=T0)
    core.start(T0)
    core.model_connected(under_way(core), T0)
    core.transport_event(StreamStarted(), T0)
    [greeting] = [c for c in to_model(core.model_event(READY, T0)) if isinstance(c, ev.CreateResponse)]
    assert greeting.instructions is not None and greeting.instructions.startswith(session.instructions)
    assert to_model(core.wind_down(EndReason.SHUTDOWN, "test", T0)) == []  # the greeting is still live
    core.model_event(ev.ResponseCreated("r1"), T0)
    [goodbye] = [
        c
        for c in to_model(core.model_event(ev.ResponseDone("r1", "completed"), T0))
        if isinstance(c, ev.CreateResponse)
    ]
    assert goodbye.instructions is not None and goodbye.instructions.startswith(session.instructions)


def test_an_interrupted_line_keeps_only_the_words_the_caller_heard() -> None:
    core = ready()
    first, _ = deliver(core, "item_a", [800, 800])
    core.model_event(ev.AgentTranscriptDone("item_a", "Certainly, a table for two at eight tonight."), T0)
    core.transport_event(PlayedUpTo("item_a", first.end), T0)  # half of the audio heard
    [line] = lines(core.model_event(ev.SpeechStarted("u", 0), T0))
    assert line.text == "Certainly, a table for" and line.heard_ms == 100
    assert heard_words("One two three", 1.0) == "One two three" and heard_words("One two", 0.0) == ""
