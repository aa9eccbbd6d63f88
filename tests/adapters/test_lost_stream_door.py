"""The status callback door (``voiceagent.line.lost``): a lost call is resumed through the REST API once,
a call that ended or whose owner holds it is left alone, and one instance never opens the door."""

from __future__ import annotations

from voiceagent.call import EndCall, EndReason, Farewell
from voiceagent.line.calls import LineCalls
from voiceagent.line.local import LocalBus, LocalState
from voiceagent.line.lost import RestDoor
from voiceagent.line.node import LineNode

CALL = "CA" + "1" * 32


class SharedState(LocalState):
    """The shared state as this instance sees it: ``owners`` were recorded by other instances."""

    shared = True

    def __init__(self, instance: str, owners: dict[str, str]) -> None:
        super().__init__(instance)
        self.owners = owners

    async def owner_of(self, call_sid: str) -> str | None:
        return self.owners.get(call_sid)


def door_on(state: LocalState, updates: list[tuple[str, str]] | None) -> tuple[RestDoor, LineCalls]:
    node = LineNode(state, LocalBus(state.instance))  # not started: a request to another instance gets no answer

    async def release(call_sid: str) -> bool:
        return False

    calls = LineCalls(node, local_end=lambda call_sid: None, release=release)
    update = None if updates is None else (lambda call_sid, twiml: updates.append((call_sid, twiml)))
    return RestDoor(calls, update, grace=0.0), calls


async def resume() -> str:
    return "<Response><Connect/></Response>"


async def test_a_call_whose_owner_is_gone_is_updated_once() -> None:
    updates: list[tuple[str, str]] = []
    door, _ = door_on(SharedState("b:8080", {CALL: "a:8080"}), updates)
    assert door.open
    assert await door.stream_lost(CALL, resume) is True
    assert await door.stream_lost(CALL, resume) is False  # stream-error, then stream-stopped: one loss
    assert updates == [(CALL, "<Response><Connect/></Response>")]


async def test_the_action_door_first_leaves_the_status_door_nothing_to_do() -> None:
    updates: list[tuple[str, str]] = []
    door, calls = door_on(SharedState("b:8080", {CALL: "a:8080"}), updates)
    assert await calls.first_resume(CALL, "a:8080")  # the <Connect action> resumed it
    assert await door.stream_lost(CALL, resume) is False
    assert updates == []


async def test_an_ended_or_held_call_and_one_over_the_budget_are_left_alone() -> None:
    updates: list[tuple[str, str]] = []
    state = SharedState("b:8080", {CALL: "b:8080"})  # held here
    door, _ = door_on(state, updates)
    assert await door.stream_lost(CALL, resume) is False
    await state.record_end(CALL, EndCall(EndReason.CALLER_HUNG_UP, "", Farewell.HANG_UP))
    state.owners[CALL] = "a:8080"
    assert await door.stream_lost(CALL, resume) is False  # its end is recorded

    async def over_budget() -> None:
        return None

    other = "CA" + "2" * 32
    state.owners[other] = "a:8080"
    assert await door.stream_lost(other, over_budget) is False
    assert updates == []


def test_one_instance_or_no_account_sid_opens_no_door() -> None:
    assert not door_on(LocalState("local"), [])[0].open
    assert not door_on(SharedState("b:8080", {}), None)[0].open
