"""The core's clock-driven decisions: call length, caller silence, goodbyes, and model reconnects."""

from __future__ import annotations

from test_call import deliver, echo, model, of, started

from voiceagent.call import CallCore, CallOptions, EndCall, Transcript
from voiceagent.realtime import events as ev


def say_goodbye(core: CallCore, item: str = "bye") -> list:
    """The model speaks the goodbye it was asked for; returns the actions of the final mark echo."""
    core.model_event(ev.ResponseCreated("r_bye"))
    [mark] = deliver(core, item, [800], "r_bye")
    core.model_event(ev.AgentTranscriptDone(item, "Goodbye!"))
    assert of(core.model_event(ev.ResponseDone("r_bye", "completed")), EndCall) == []  # still playing
    return echo(core, mark)


def test_max_call_length_asks_for_a_goodbye_then_ends_after_it_played():
    core = started(CallOptions(max_call_seconds=60))
    assert core.tick(0.0) == []
    assert core.tick(59.0) == []
    actions = core.tick(60.0)
    [request] = [c for c in model(actions) if isinstance(c, ev.CreateResponse)]
    assert "goodbye" in request.instructions
    assert core.tick(61.0) == []  # asked once
    final = say_goodbye(core)
    assert of(final, EndCall) == [EndCall("the call reached its maximum length")]
    assert of(final, Transcript)[0].text == "Goodbye!"


def test_the_goodbye_waits_for_a_live_response_to_finish():
    core = started(CallOptions(max_call_seconds=10))
    core.tick(0.0)
    core.model_event(ev.ResponseCreated("r1"))
    assert model(core.tick(10.0)) == []
    assert any(isinstance(c, ev.CreateResponse) for c in model(core.model_event(ev.ResponseDone("r1", "completed"))))


def test_caller_silence_ends_the_call_politely():
    core = started(CallOptions(caller_silence_seconds=30))
    core.tick(0.0)
    core.model_event(ev.SpeechStarted("u", 0))
    core.tick(20.0)
    core.model_event(ev.SpeechStopped("u", 900))
    assert core.tick(49.0) == []  # 29 s since the caller stopped
    assert any(isinstance(c, ev.CreateResponse) for c in model(core.tick(50.5)))


def test_silence_is_not_counted_while_the_agent_talks():
    core = started(CallOptions(caller_silence_seconds=5))
    core.tick(0.0)
    deliver(core, "long", [8000])  # a second of audio still unplayed
    assert core.tick(100.0) == []


def test_a_goodbye_that_never_finishes_is_cut_at_the_grace_deadline():
    core = started(CallOptions(max_call_seconds=10, goodbye_grace_seconds=5))
    core.tick(0.0)
    core.tick(10.0)
    assert core.tick(14.9) == []
    assert of(core.tick(15.0), EndCall)


def test_wind_down_before_the_session_is_ready_ends_at_once():
    core = CallCore()
    assert of(core.wind_down("the service is shutting down"), EndCall)


def test_reconnect_replays_the_conversation_and_keeps_old_audio_untruncatable():
    core = started()
    core.model_event(ev.CallerTranscript("u1", "A table for two, please."))
    marks = deliver(core, "a1", [800, 800])
    core.model_event(ev.AgentTranscriptDone("a1", "Certainly."))
    core.model_event(ev.AudioDone("r", "a1"))
    for name in marks:
        echo(core, name)
    core.model_event(ev.CallerTranscript("u2", "At eight."))
    deliver(core, "a2", [800])  # still playing when the model connection drops
    replay = model(core.model_reconnected())
    assert replay == [
        ev.CreateTextItem("user", "A table for two, please."),
        ev.CreateTextItem("assistant", "Certainly."),
        ev.CreateTextItem("user", "At eight."),
    ]
    assert not core.session_ready and core.stats["model_sessions"] == 2
    # the caller talks over the old item: Twilio is cleared, but the new session is not asked to truncate
    actions = core.model_event(ev.SpeechStarted("u3", 0))
    assert [m for m in model(actions) if isinstance(m, ev.Truncate)] == []
    assert of(actions, Transcript)[0].interrupted
    # no second greeting on the new session
    core.model_event(ev.SessionUpdated("pcmu", "pcmu"))
    assert model(core.model_event(ev.SessionUpdated("pcmu", "pcmu"))) == []


def test_quiet_means_nobody_talking_and_nothing_generating():
    core = started()
    assert core.quiet
    core.model_event(ev.SpeechStarted("u", 0))
    assert not core.quiet
    core.model_event(ev.SpeechStopped("u", 500))
    core.model_event(ev.ResponseCreated("r"))
    assert not core.quiet
    [mark] = deliver(core, "a", [160], "r")
    core.model_event(ev.ResponseDone("r", "completed"))
    assert not core.quiet  # audio still playing
    echo(core, mark)
    assert core.quiet

