"""Property test of turn-taking (issue 16): random interleavings of caller turns, VAD blips, tool
completions, operator lines, keypad entries and response life cycles (created, completed, cancelled,
failed, incomplete, with function calls), through the real call core, against a small model of the
Realtime service's rules (docs/protocol.md §2, "Responses: one at a time"): one response at a time, a
``response.create`` while one is requested or in progress is refused, the server answers a caller turn by
itself and cancels the response in progress when the caller speaks.

The invariants: the core never has two requests outstanding (so the service never refuses one); every
reason to speak is answered or dropped with a log line; no function call of a response that did not
complete is carried out.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.core_helpers import CALL, READY, Clock, under_way
from voiceagent.call import (
    Accepted,
    CallCore,
    CallOptions,
    Digit,
    EndCall,
    EndReason,
    ReasonDropped,
    ReasonsAnswered,
    RunTool,
    SendToModel,
    StreamStarted,
)
from voiceagent.call.actions import Action
from voiceagent.call.phases import CallPhase
from voiceagent.realtime import events as ev

REFUSED = "conversation_already_has_active_response"
NOT_RUN = '{"error": "not carried out'
OPTIONS = CallOptions(
    greeting="Hello",
    end_call_tool=True,
    dtmf_to_model=True,
    answer_timeout_seconds=15.0,
    response_done_seconds=60.0,
)

steps = st.one_of(
    st.tuples(st.just("create")),
    st.tuples(st.just("call"), st.sampled_from(["lookup", "book", "end_call"])),
    st.tuples(st.just("done"), st.sampled_from(["completed", "completed", "cancelled", "failed", "incomplete"])),
    st.tuples(st.just("speech_started")),
    st.tuples(st.just("speech_stopped")),
    st.tuples(st.just("tool"), st.integers(0, 3)),
    st.tuples(st.just("say")),
    st.tuples(st.just("key"), st.sampled_from(list("0123456789#"))),
    st.tuples(st.just("tick"), st.sampled_from([0.05, 0.2, 1.1, 2.5, 25.0])),
)


@dataclass
class Service:
    """The Realtime service's rules for responses, as far as this test needs them."""

    core: CallCore
    clock: Clock
    ids: itertools.count[int] = field(default_factory=itertools.count)
    requested: str | None = None  # asked for, not yet created
    active: str | None = None  # created, not yet done
    speaking: bool = False
    refusals: int = 0
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)  # call id -> (response id, name)
    status: dict[str, str] = field(default_factory=dict)  # response id -> how it ended
    running: list[str] = field(default_factory=list)  # tool calls the core started
    carried_out_of: list[str] = field(default_factory=list)  # responses whose calls the core carried out
    introduced: Counter[str] = field(default_factory=Counter)  # reasons to speak the test gave the core
    logged: Counter[str] = field(default_factory=Counter)  # reasons answered or dropped, by log line
    answered_responses: set[str] = field(default_factory=set)  # responses whose tool outputs went back
    ended: EndCall | None = None

    def feed(self, actions: list[Action]) -> None:
        for action in actions:
            self._observe(action)
            if isinstance(action, SendToModel) and isinstance(action.command, ev.CreateResponse):
                if self.requested is not None or self.active is not None:
                    self.refusals += 1
                    self.feed(self.core.model_event(ev.ModelError(REFUSED, "refused", routine=True), self.clock.tick()))
                else:
                    self.requested = f"resp_{next(self.ids)}"
            elif isinstance(action, RunTool):
                self.running.append(action.call_id)
                self.carried_out_of.append(self.calls[action.call_id][0])
            elif isinstance(action, EndCall):
                self.ended = action

    def _observe(self, action: Action) -> None:
        if isinstance(action, ReasonsAnswered | ReasonDropped):
            kinds = action.reasons if isinstance(action, ReasonsAnswered) else (action.reason,)
            self.logged.update(kinds)
        elif isinstance(action, SendToModel) and isinstance(action.command, ev.CreateTextItem):
            if action.command.text.startswith("(The caller keyed"):
                self.introduced["keypad"] += 1
        elif isinstance(action, SendToModel) and isinstance(action.command, ev.FunctionOutput):
            if not action.command.output.startswith(NOT_RUN):
                self.answered_responses.add(self.calls[action.command.call_id][0])
                self.introduced["tool_results"] = len(self.answered_responses)

    def step(self, step: tuple[object, ...]) -> None:
        core, clock = self.core, self.clock
        match step:
            case ("create",) if self.requested is not None:
                self.active, self.requested = self.requested, None
                self.feed(core.model_event(ev.ResponseCreated(self.active), clock.tick()))
            case ("call", str(name)) if self.active is not None:
                call_id = f"call_{next(self.ids)}"
                self.calls[call_id] = (self.active, name)
                self.feed(core.model_event(ev.FunctionCall(self.active, call_id, name, "{}"), clock.tick()))
            case ("done", str(status)) if self.active is not None:
                self._done(status)
            case ("speech_started",) if not self.speaking:
                self.speaking = True
                self.feed(core.model_event(ev.SpeechStarted("u", 0), clock.tick()))
                if self.active is not None:
                    self._done("cancelled")  # interrupt_response: the service cancels it itself
            case ("speech_stopped",) if self.speaking:
                self.speaking = False
                self.feed(core.model_event(ev.SpeechStopped("u", 100), clock.tick()))
                if self.active is None and self.requested is None:  # the server answers the turn itself
                    self.active = f"vad_{next(self.ids)}"
                    self.feed(core.model_event(ev.ResponseCreated(self.active), clock.tick()))
            case ("tool", int(index)) if self.running:
                call_id = self.running.pop(index % len(self.running))
                self.feed(core.tool_finished(call_id, '{"ok": true}', clock.tick()))
            case ("say",):
                answer, actions = core.operator_say("Your table is ready.", clock.tick())
                self.introduced["operator_line"] += isinstance(answer, Accepted)
                self.feed(actions)
            case ("key", str(key)):
                self.feed(core.transport_event(Digit(key), clock.tick()))
            case ("tick", float(seconds)):
                now = clock.tick(seconds)
                due = core.next_deadline()
                if due is not None and due <= now:
                    self.feed(core.handle_timer(now))
            case _:
                pass  # not possible now: the service would not do it

    def _done(self, status: str) -> None:
        response_id, self.active = self.active, None
        assert response_id is not None
        self.status[response_id] = status
        self.feed(self.core.model_event(ev.ResponseDone(response_id, status), self.clock.tick()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=60))
def test_turn_taking_holds_its_invariants_whatever_the_interleaving(script: list[tuple[object, ...]]) -> None:
    clock = Clock()
    core = CallCore(OPTIONS, call_sid=CALL, now=clock.now)
    service = Service(core, clock)
    core.start(clock.tick())
    service.feed(core.model_connected(under_way(core), clock.tick()))
    service.feed(core.transport_event(StreamStarted(), clock.tick()))
    service.feed(core.model_event(READY, clock.tick()))  # the greeting is asked for
    assert service.requested is not None
    for step in script:
        if core.phase is CallPhase.ENDED:
            break
        service.step(step)
        note(f"{step} -> requested={service.requested} active={service.active}")
    service.feed(core.end(EndReason.OPERATOR_HUNG_UP, "the test is over", clock.tick()))

    assert service.refusals == 0, "a response.create while one was requested or in progress"
    for kind, count in service.introduced.items():
        assert service.logged[kind] >= count, (kind, service.introduced, service.logged)
    not_completed = {rid for rid, status in service.status.items() if status != "completed"}
    assert not_completed.isdisjoint(service.carried_out_of)
    if service.ended is not None and service.ended.reason is EndReason.AGENT_HUNG_UP:
        hung_up_by = {rid for rid, name in service.calls.values() if name == "end_call"}
        assert any(service.status.get(rid) == "completed" for rid in hung_up_by)
