"""Property tests: random interleavings of model deltas, Twilio playback, marks, clears and caller
speech, checked against the truncate invariants of PROTOCOLS.md §2.

A tiny Twilio model plays what the core sends, echoes marks exactly as Twilio does (after the audio
before them has played; all pending ones at once on ``clear``) and keeps the ground truth of how many
bytes of each item the caller actually heard.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagent.call import CallCore, CallOptions, ToModel, ToTwilio, Transcript
from voiceagent.realtime import events as ev
from voiceagent.twilio import messages as tw

STREAM = "MZ" + "a" * 32


@dataclass
class TwilioModel:
    buffer: deque = field(default_factory=deque)  # ("audio", item, n) | ("mark", name)
    played: dict = field(default_factory=dict)  # item -> bytes heard
    echoes: list = field(default_factory=list)  # mark names to deliver to the core, in order
    covered: dict = field(default_factory=dict)  # mark name -> (item, bytes of it played) or None if cleared
    clears: int = 0

    def accept(self, message, item: str | None) -> None:
        if isinstance(message, tw.PlayAudio):
            self.buffer.append(("audio", item, tw.b64_decoded_length(message.payload)))
        elif isinstance(message, tw.SetMark):
            self.buffer.append(("mark", message.name, item))
            self._echo_ready()
        elif isinstance(message, tw.ClearAudio):
            self.clears += 1
            marks = [entry for entry in self.buffer if entry[0] == "mark"]
            self.buffer.clear()
            for _, name, _item in marks:
                self.covered[name] = None  # echoed because cleared, not because played
                self.echoes.append(name)

    def play(self, budget: int) -> None:
        while budget > 0 and self.buffer:
            self._echo_ready()
            if not self.buffer:
                break
            _, item, size = self.buffer[0]
            step = min(size, budget)
            self.played[item] = self.played.get(item, 0) + step
            budget -= step
            if step == size:
                self.buffer.popleft()
            else:
                self.buffer[0] = ("audio", item, size - step)
        self._echo_ready()

    def _echo_ready(self) -> None:
        while self.buffer and self.buffer[0][0] == "mark":
            _, name, item = self.buffer.popleft()
            self.covered[name] = (item, self.played.get(item, 0))
            self.echoes.append(name)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("delta"), st.integers(1, 2000)),
        st.tuples(st.just("next_item")),
        st.tuples(st.just("play"), st.integers(1, 4000)),
        st.tuples(st.just("echo"), st.integers(1, 5)),
        st.tuples(st.just("speech")),
        st.tuples(st.just("response_done")),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(ops, st.booleans())
def test_truncation_invariants_hold_under_any_interleaving(operations, server_interrupts):
    core = CallCore(CallOptions(server_interrupts=server_interrupts))
    core.twilio_event(tw.Start(STREAM, "CA" + "b" * 32, "AC", {}))
    core.model_event(ev.SessionUpdated("pcmu", "pcmu"))
    twilio = TwilioModel()
    item_no, received, truncated = 1, {}, {}
    largest_chunk: dict[str, int] = {}
    response_live = False
    acked: dict[str, int] = {}  # item -> bytes the core has been told were played (delivered echoes)

    def deliver_echo() -> None:
        name = twilio.echoes.pop(0)
        if twilio.covered[name] is not None:
            played_item, upto = twilio.covered[name]
            acked[played_item] = max(acked.get(played_item, 0), upto)
        run(core.twilio_event(tw.MarkEcho(STREAM, name)), None)

    def item() -> str:
        return f"item_{item_no}"

    def run(actions, current: str | None) -> None:
        sent = [a.message for a in actions if isinstance(a, ToTwilio)]
        for i, message in enumerate(sent):
            if isinstance(message, tw.PlayAudio):
                assert current not in truncated, "audio of a truncated item reached the caller"
                assert isinstance(sent[i + 1], tw.SetMark), "every media is followed by its mark"
            twilio.accept(message, current)
        for command in (a.command for a in actions if isinstance(a, ToModel)):
            if isinstance(command, ev.Truncate):
                name = command.item_id
                assert name not in truncated, "an item is truncated at most once"
                heard = twilio.played.get(name, 0)
                ms = command.audio_end_ms
                assert ms * 8 <= received[name], "never past the audio the model produced"
                assert ms * 8 <= heard, "never past what the caller heard"
                assert ms == min(acked.get(name, 0), received[name]) // 8, "exactly what the marks acknowledged"
                if not twilio.echoes:
                    assert heard - ms * 8 < largest_chunk[name] + 8, "at most one chunk short of what was heard"
                truncated[name] = ms

    for op in operations:
        kind = op[0]
        if kind == "delta":
            size = op[1]
            if not response_live:
                run(core.model_event(ev.ResponseCreated(f"r{item_no}")), None)
                response_live = True
            payload = base64.b64encode(bytes(size)).decode()
            if item() not in truncated:
                received[item()] = received.get(item(), 0) + size
                largest_chunk[item()] = max(largest_chunk.get(item(), 0), size)
            run(core.model_event(ev.AudioDelta(f"r{item_no}", item(), payload)), item())
        elif kind == "next_item":
            run(core.model_event(ev.AudioDone(f"r{item_no}", item())), None)
            item_no += 1
        elif kind == "response_done" and response_live:
            run(core.model_event(ev.ResponseDone(f"r{item_no}", "completed")), None)
            response_live = False
        elif kind == "play":
            twilio.play(op[1])
        elif kind == "echo":
            for _ in range(min(op[1], len(twilio.echoes))):
                deliver_echo()
        elif kind == "speech":
            unplayed = any(received[i] > acked.get(i, 0) for i in received if i not in truncated)
            clears_before = twilio.clears
            actions = core.model_event(ev.SpeechStarted("user", 0))
            run(actions, None)
            assert twilio.clears - clears_before == (1 if unplayed else 0), "clear exactly when audio is unplayed"
            cancels = [a for a in actions if isinstance(a, ToModel) and isinstance(a.command, ev.CancelResponse)]
            assert len(cancels) == (1 if response_live and not server_interrupts else 0)

    # deliver every outstanding echo: late echoes after clears must be harmless
    while twilio.echoes:
        deliver_echo()
    lines = [a for a in core.finish() if isinstance(a, Transcript)]
    assert all(line.role == "agent" for line in lines)
    for name, ms in truncated.items():
        assert core.items[name].heard_ms == ms
