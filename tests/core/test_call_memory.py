"""A long call does not hold everything it ever did: an agent item whose life is over (generated in full,
heard or cut, recorded) is forgotten, and whatever arrives late for it is dropped, never played or
recorded; the conversation kept for a replacing session is the latest within a character budget."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.core_helpers import Clock, b64, commands, of, ready_core, under_way
from voiceagent.call import CallCore, CallerHungUp, CallOptions, PlayAudio, PlayedUpTo, RecordLine
from voiceagent.call.history import History
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine


def answer(core: CallCore, clock: Clock, n: int, *, heard: bool = True) -> list[RecordLine]:
    """Turn ``n``: the model answers with one item in two deltas; the caller hears it (if ``heard``)."""
    response, item = f"resp_{n}", f"item_{n}"
    recorded = []
    plays = []
    for size in (800, 400):
        plays += of(core.model_event(ev.AudioDelta(response, item, b64(size)), clock.tick()), PlayAudio)
    events: list[ev.ModelEvent] = [
        ev.AudioDone(response, item),
        ev.AgentTranscriptDone(item, f"Answer number {n}."),
        ev.ResponseDone(response, "completed"),
    ]
    for event in events:
        recorded += of(core.model_event(event, clock.tick()), RecordLine)
    if heard:
        for play in plays:
            recorded += of(core.transport_event(PlayedUpTo(item, play.end), clock.tick()), RecordLine)
    return recorded


def test_an_hour_of_answers_keeps_only_the_one_still_playing() -> None:
    clock = Clock()
    core = ready_core(CallOptions(), clock)
    for n in range(1000):
        [line] = answer(core, clock, n)
        assert line.line.text == f"Answer number {n}." and not line.line.interrupted
        assert len(core._audio.playback.items) == 0
    answer(core, clock, 1000, heard=False)  # still playing: kept, and recorded as cut at the end
    assert list(core._audio.playback.items) == ["item_1000"]
    [cut] = of(core.transport_event(CallerHungUp("caller hung up"), clock.tick()), RecordLine)
    assert cut.line.interrupted and cut.line.heard_ms == 0  # none of it was reported heard


def test_whatever_comes_late_for_a_forgotten_item_is_neither_played_nor_recorded() -> None:
    clock = Clock()
    core = ready_core(CallOptions(), clock)
    answer(core, clock, 1)
    late: list[ev.ModelEvent] = [
        ev.AudioDelta("resp_1", "item_1", b64(800)),
        ev.AgentTranscriptDelta("item_1", " and more"),
        ev.AudioDone("resp_1", "item_1"),
        ev.AgentTranscriptDone("item_1", "Answer number 1, again."),
        ev.ResponseDone("resp_1", "completed"),
    ]
    actions = [action for event in late for action in core.model_event(event, clock.tick())]
    assert of(actions, PlayAudio) == [] and of(actions, RecordLine) == []
    assert core.transport_event(PlayedUpTo("item_1", 1200), clock.tick()) == []  # a late report: not junk
    assert core.figures.bad_inputs == 0
    assert of(core.transport_event(CallerHungUp("caller hung up"), clock.tick()), RecordLine) == []


def test_a_cut_answer_is_forgotten_once_its_response_is_over() -> None:
    clock = Clock()
    core = ready_core(CallOptions(), clock)
    core.model_event(ev.AudioDelta("resp_1", "item_1", b64(8000)), clock.tick())
    core.model_event(ev.SpeechStarted("item_u", 0), clock.tick(0.2))  # the caller talks over it
    assert core._audio.playback.items["item_1"].truncated
    late = core.model_event(ev.AudioDelta("resp_1", "item_1", b64(800)), clock.tick())
    assert of(late, PlayAudio) == []
    core.model_event(ev.ResponseDone("resp_1", "cancelled"), clock.tick())
    assert "item_1" not in core._audio.playback.items


def test_a_replacing_session_is_told_the_latest_of_a_long_conversation_and_how_much_was_left_out() -> None:
    clock = Clock()
    core = ready_core(CallOptions(history_chars=400), clock)
    for n in range(100):
        said = f"This is what the caller said, line {n:03d}."
        core.model_event(ev.CallerTranscript(f"item_u{n}", said), clock.tick())
    core.model_lost(1006, "dropped", clock.tick(30))  # a healthy session, lost
    [update] = [
        c for c in commands(core.model_connected(under_way(core), clock.tick(1))) if isinstance(c, ev.UpdateSession)
    ]
    told = update.config.instructions
    assert "line 099." in told and "line 000." not in told
    kept = told.count("Caller: This is what the caller said")
    assert 0 < kept * len("This is what the caller said, line 000.") <= 400
    assert f"(The first {100 - kept} lines of the conversation are left out.)" in told


@given(st.lists(st.text(max_size=300), max_size=60), st.integers(min_value=0, max_value=2000))
def test_history_keeps_the_latest_lines_within_its_budget(texts: list[str], budget: int) -> None:
    history = History(budget)
    for text in texts:
        history.add(TranscriptLine("CA1", "caller", text))
    kept = [line.text for line in history]
    assert kept == texts[len(texts) - len(kept) :] and history.left_out == len(texts) - len(kept)
    assert sum(map(len, kept)) <= budget or len(kept) == 1  # one line is kept whatever its length
    if history.left_out:  # nothing more could have been kept
        assert sum(map(len, texts[-len(kept) - 1 :])) > budget
