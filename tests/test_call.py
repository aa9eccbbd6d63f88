"""The call state machine, driven with plain event lists: no sockets, no clocks."""

from __future__ import annotations

import base64

from voiceagent.call import (
    CallCore,
    CallOptions,
    EndCall,
    Log,
    ToModel,
    ToTwilio,
    Transcript,
)
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev
from voiceagent.twilio import messages as tw

STREAM = "MZ" + "0" * 32
CALL = "CA" + "1" * 32


def b64(n: int, fill: int = 0x55) -> str:
    return base64.b64encode(bytes([fill]) * n).decode()


def started(options: CallOptions | None = None) -> CallCore:
    core = CallCore(options)
    core.twilio_event(tw.Start(STREAM, CALL, "AC" + "2" * 32, {"from": "+15551234567"}))
    core.model_event(ev.SessionUpdated("pcmu", "pcmu"))
    return core


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def twilio(actions):
    return [a.message for a in of(actions, ToTwilio)]


def model(actions):
    return [a.command for a in of(actions, ToModel)]


def deliver(core: CallCore, item: str, sizes: list[int], response: str = "resp_1") -> list[str]:
    """Send deltas of ``sizes`` bytes; return the mark names the core set, in order."""
    marks = []
    for size in sizes:
        out = twilio(core.model_event(ev.AudioDelta(response, item, b64(size))))
        assert [type(m) for m in out] == [tw.PlayAudio, tw.SetMark]
        marks.append(out[1].name)
    return marks


def echo(core: CallCore, name: str):
    return core.twilio_event(tw.MarkEcho(STREAM, name))


def test_media_passes_through_untouched():
    core = started()
    payload = b64(160, 0x7F)
    assert model(core.twilio_event(tw.Media(STREAM, payload))) == [ev.AppendAudio(payload)]
    assert core.stats["bytes_in"] == 160


def test_each_delta_is_one_media_then_one_mark_with_the_payload_untouched():
    core = started()
    payload = b64(800, 0x12)
    out = twilio(core.model_event(ev.AudioDelta("r", "item_a", payload)))
    assert out[0] == tw.PlayAudio(payload)
    assert isinstance(out[1], tw.SetMark)


def test_greeting_is_requested_once_when_the_session_is_ready():
    core = CallCore(CallOptions(greeting="Hello from the bistro"))
    first = model(core.model_event(ev.SessionUpdated("pcmu", "pcmu")))
    assert first == [ev.CreateResponse(greeting_instructions("Hello from the bistro"))]
    assert model(core.model_event(ev.SessionUpdated("pcmu", "pcmu"))) == []


def test_no_greeting_configured_waits_for_the_caller():
    core = CallCore(CallOptions(greeting=""))
    assert model(core.model_event(ev.SessionUpdated("pcmu", "pcmu"))) == []


def test_a_model_that_will_not_speak_ulaw_ends_the_call():
    core = CallCore()
    actions = core.model_event(ev.SessionUpdated("pcmu", "audio/pcm"))
    assert of(actions, EndCall) and "μ-law" in of(actions, EndCall)[0].reason
    assert of(actions, Log)[0].level == "error"


def test_barge_in_truncates_at_what_the_marks_acknowledged():
    core = started()
    core.model_event(ev.ResponseCreated("r1"))
    marks = deliver(core, "item_a", [800, 800, 800], "r1")  # 300 ms produced
    echo(core, marks[0])  # 100 ms played
    actions = core.model_event(ev.SpeechStarted("item_user", 5000))
    assert twilio(actions) == [tw.ClearAudio()]
    assert model(actions) == [ev.Truncate("item_a", 100)]  # the server cancels its own response
    [line] = of(actions, Transcript)
    assert line.role == "agent" and line.interrupted and line.heard_ms == 100


def test_barge_in_never_truncates_past_what_the_model_produced():
    core = started()
    marks = deliver(core, "item_a", [803])  # an odd byte count: 100.375 ms
    actions = core.model_event(ev.SpeechStarted("u", 0))
    assert model(actions) == [ev.Truncate("item_a", 0)]
    assert core.items["item_a"].heard_ms * 8 <= 803
    assert echo(core, marks[0]) == []  # the echo of a cleared mark is tolerated


def test_no_truncate_when_everything_was_played():
    core = started()
    [mark] = deliver(core, "item_a", [1600])
    core.model_event(ev.AudioDone("r", "item_a"))
    echo(core, mark)
    actions = core.model_event(ev.SpeechStarted("u", 0))
    assert actions == []


def test_no_truncate_for_an_item_without_audio():
    core = started()
    core.model_event(ev.AgentTranscriptDelta("item_a", "Hel"))
    assert core.model_event(ev.SpeechStarted("u", 0)) == []


def test_cancel_only_when_the_server_will_not_cancel_itself():
    core = started(CallOptions(server_interrupts=False))
    core.model_event(ev.ResponseCreated("r1"))
    deliver(core, "item_a", [800], "r1")
    assert ev.CancelResponse() in model(core.model_event(ev.SpeechStarted("u", 0)))

    core = started(CallOptions(server_interrupts=False))
    deliver(core, "item_a", [800], "r1")  # response already done: nothing to cancel
    assert ev.CancelResponse() not in model(core.model_event(ev.SpeechStarted("u", 0)))


def test_late_deltas_of_a_truncated_item_are_dropped():
    core = started()
    deliver(core, "item_a", [800])
    core.model_event(ev.SpeechStarted("u", 0))
    assert core.model_event(ev.AudioDelta("r", "item_a", b64(800))) == []
    assert core.items["item_a"].received == 800
    # a new item after the interruption plays normally
    assert len(deliver(core, "item_b", [400], "r2")) == 1


def test_a_second_speech_start_does_not_truncate_again():
    core = started()
    deliver(core, "item_a", [800])
    core.model_event(ev.SpeechStarted("u1", 0))
    assert core.model_event(ev.SpeechStarted("u2", 100)) == []


def test_agent_line_is_logged_when_fully_played():
    core = started()
    marks = deliver(core, "item_a", [800, 800])
    core.model_event(ev.AgentTranscriptDelta("item_a", "Hello "))
    core.model_event(ev.AudioDone("r", "item_a"))
    assert of(core.model_event(ev.AgentTranscriptDone("item_a", "Hello there.")), Transcript) == []
    assert of(echo(core, marks[0]), Transcript) == []  # still playing
    [line] = of(echo(core, marks[1]), Transcript)
    assert line == Transcript("agent", "Hello there.", interrupted=False, heard_ms=None, item_id="item_a")


def test_caller_lines_come_from_input_transcription():
    core = started()
    [line] = of(core.model_event(ev.CallerTranscript("item_u", " Book a table. ")), Transcript)
    assert line.role == "caller" and line.text == "Book a table." and not line.interrupted
    assert of(core.model_event(ev.CallerTranscript("item_v", "  ")), Transcript) == []


def test_finish_logs_a_line_still_playing_as_interrupted():
    core = started()
    marks = deliver(core, "item_a", [800, 800])
    core.model_event(ev.AgentTranscriptDone("item_a", "Two tables."))
    echo(core, marks[0])
    [line] = of(core.finish(), Transcript)
    assert line.interrupted and line.heard_ms == 100
    assert core.finish() == []  # idempotent


def test_audio_before_the_stream_starts_is_held_then_sent_in_order():
    core = CallCore(CallOptions(greeting="Hi"))
    core.model_event(ev.SessionUpdated("pcmu", "pcmu"))
    assert core.model_event(ev.AudioDelta("r", "item_g", b64(160, 1))) == []
    assert core.model_event(ev.AudioDelta("r", "item_g", b64(160, 2))) == []
    out = twilio(core.twilio_event(tw.Start(STREAM, CALL, "AC", {})))
    assert [m.payload for m in out if isinstance(m, tw.PlayAudio)] == [b64(160, 1), b64(160, 2)]
    assert sum(isinstance(m, tw.SetMark) for m in out) == 2


def test_messages_for_another_stream_or_before_start_are_ignored_with_a_warning():
    core = CallCore()
    [log] = core.twilio_event(tw.Media(STREAM, b64(160)))
    assert log.event == "twilio_before_start"
    core = started()
    [log] = core.twilio_event(tw.Media("MZ" + "f" * 32, b64(160)))
    assert log.event == "twilio_wrong_stream"
    assert core.stats["bytes_in"] == 0


def test_stop_ends_the_call():
    core = started()
    assert of(core.twilio_event(tw.Stop(STREAM)), EndCall) == [EndCall("caller hung up")]


def test_model_errors_are_logged_and_never_end_the_call():
    core = started()
    for code in ("response_cancel_not_active", "conversation_already_has_active_response", "invalid_value",
                 "session_expired"):
        actions = core.model_event(ev.ModelError(code, "…"))
        assert of(actions, EndCall) == [] and of(actions, Log)[0].level == "warning"
        assert of(actions, Log)[0].fields["code"] == code
    actions = core.model_event(ev.ModelError("server_error", "boom"))
    assert of(actions, EndCall) == [] and of(actions, Log)[0].level == "error"


def test_unknown_mark_is_a_warning():
    core = started()
    [log] = echo(core, "nope")
    assert log.event == "twilio_unknown_mark"
