"""Caller audio gathered into fewer, larger model appends (``caller_audio_batch_ms``): nothing lost,
nothing reordered, across a lost session too; and off by default, every frame untouched."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tests.core_helpers import Clock, b64, commands, ready_core, under_way
from voiceagent.call import CallCore, CallerAudio, CallerHungUp, CallOptions, EndCall, SendToModel
from voiceagent.call.guards import CallerAudioBatch
from voiceagent.realtime import events as ev


def frame(fill: int, size: int = 160) -> CallerAudio:
    return CallerAudio(b64(size, fill), size)


def appended(core_commands: list[ev.ModelCommand]) -> bytes:
    """The caller audio the model was sent, decoded and joined."""
    return b"".join(base64.b64decode(c.audio, validate=True) for c in core_commands if isinstance(c, ev.AppendAudio))


def test_off_by_default_every_frame_goes_as_it_came() -> None:
    clock = Clock()
    core = ready_core(CallOptions(), clock)
    for fill in range(1, 4):
        assert commands(core.transport_event(frame(fill), clock.tick(0.02))) == [ev.AppendAudio(b64(160, fill))]


def test_sixty_ms_batches_send_one_append_for_every_three_frames() -> None:
    clock = Clock()
    core = ready_core(CallOptions(caller_audio_batch_ms=60), clock)
    sent = [commands(core.transport_event(frame(fill), clock.tick(0.02))) for fill in range(1, 7)]
    assert [len(c) for c in sent] == [0, 0, 1, 0, 0, 1]
    assert appended(sent[2]) == bytes([1]) * 160 + bytes([2]) * 160 + bytes([3]) * 160
    assert appended(sent[5]) == bytes([4]) * 160 + bytes([5]) * 160 + bytes([6]) * 160


def test_a_part_filled_batch_goes_first_to_the_next_session_then_what_was_said_meanwhile() -> None:
    clock = Clock()
    core = ready_core(CallOptions(caller_audio_batch_ms=60), clock)
    sent = commands(core.transport_event(frame(1), clock.tick(0.02)))
    sent += commands(core.model_lost(1006, "dropped", clock.tick(15)))  # a healthy session, lost
    for fill in (2, 3):
        sent += commands(core.transport_event(frame(fill), clock.tick(0.02)))
    sent += commands(core.model_connected(under_way(core), clock.tick()))
    sent += commands(core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), clock.tick()))
    assert appended(sent) == bytes([1]) * 160 + bytes([2]) * 160 + bytes([3]) * 160


def test_audio_that_is_not_base64_is_bad_input_and_the_batch_keeps_what_it_had() -> None:
    clock = Clock()
    core = ready_core(CallOptions(caller_audio_batch_ms=60), clock)
    core.transport_event(frame(1), clock.tick(0.02))
    assert commands(core.transport_event(CallerAudio("@@@@", 3), clock.tick(0.02))) == []
    assert core.figures.bad_inputs == 1
    sent = [c for fill in (2, 3) for c in commands(core.transport_event(frame(fill), clock.tick(0.02)))]
    assert appended(sent) == bytes([1]) * 160 + bytes([2]) * 160 + bytes([3]) * 160


@given(
    batch_bytes=st.integers(min_value=0, max_value=2000),
    sizes=st.lists(st.integers(min_value=1, max_value=700), max_size=40),
)
def test_a_batch_loses_and_reorders_nothing_and_holds_less_than_one_batch(batch_bytes: int, sizes: list[int]) -> None:
    batch = CallerAudioBatch(batch_bytes)
    spoken, sent = bytearray(), bytearray()
    for k, size in enumerate(sizes):
        audio = bytes((k + i) % 256 for i in range(size))
        spoken += audio
        payload = batch.add(CallerAudio(base64.b64encode(audio).decode(), size))
        if payload is not None:
            chunk = base64.b64decode(payload, validate=True)
            assert len(chunk) >= batch_bytes  # nothing smaller than a batch goes alone
            sent += chunk
    assert spoken.startswith(sent) and len(spoken) - len(sent) < max(batch_bytes, 1)
    rest = batch.take()
    sent += b"" if rest is None else base64.b64decode(rest, validate=True)
    assert sent == spoken and batch.take() is None


def test_the_core_reads_the_option_per_call() -> None:
    """Two calls in one process, batched differently: nothing is shared."""
    clock = Clock()
    batched, plain = ready_core(CallOptions(caller_audio_batch_ms=40), clock), ready_core(CallOptions(), clock)
    assert isinstance(batched, CallCore) and isinstance(plain, CallCore)
    now = clock.tick(0.02)
    assert commands(batched.transport_event(frame(1), now)) == []
    assert commands(plain.transport_event(frame(1), now)) == [ev.AppendAudio(b64(160, 1))]


def test_at_hang_up_the_part_filled_batch_still_reaches_the_model_before_the_end() -> None:
    clock = Clock()
    core = ready_core(CallOptions(caller_audio_batch_ms=60), clock)
    core.transport_event(frame(1), clock.tick(0.02))
    actions = core.transport_event(CallerHungUp("caller hung up"), clock.tick(0.02))
    assert appended(commands(actions)) == bytes([1]) * 160
    assert isinstance(actions[-1], EndCall) and isinstance(actions[0], SendToModel)
