"""Admission, on its own: busy, webhook replay, the per-number rate and a stream's checks, with time moved
by hand (the object reads no clock of its own)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from voiceagent.admission import (
    REPLAY_MEMORY_SECONDS,
    Admission,
    Busy,
    CallAnswered,
    CallStatus,
    EndedEarly,
    Load,
    RateLimited,
    Rejected,
    Replayed,
    StreamAccepted,
    other_party,
)
from voiceagent.call import EndCall, EndReason, Farewell
from voiceagent.twilio.security import StreamTokens

CALL = "CA" + "1" * 32
OTHER = "CA" + "2" * 32
CALLER = "+15551230000"
IDLE = Load(calls=0, draining=False)
NEW = CallStatus(held=False, attached=False, ended=None)
PREWARMED = CallStatus(held=True, attached=False, ended=None)


@dataclass
class Time:
    """One hand-moved clock for both of admission's: wall time for tokens, monotonic for the windows."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def admission(time: Time, *, max_calls: int = 2, per_number: int = 3) -> Admission:
    tokens = StreamTokens("test-auth-token")
    return Admission(tokens, max_calls=max_calls, calls_per_number_per_minute=per_number, wall=time, monotonic=time)


def answered(verdict: object) -> str:
    assert isinstance(verdict, CallAnswered), verdict
    return verdict.token


def test_a_webhook_is_answered_with_a_token_good_for_its_call_only() -> None:
    time = Time()
    gate = admission(time)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    assert gate.tokens.check(token, CALL, time.now) is None
    assert gate.tokens.check(token, OTHER, time.now) == "stream token does not match this call"


@pytest.mark.parametrize(
    ("load", "reason"),
    [(Load(calls=0, draining=True), "draining"), (Load(calls=2, draining=False), "at capacity")],
)
def test_a_busy_service_refuses_the_webhook_before_remembering_it(load: Load, reason: str) -> None:
    gate = admission(Time())
    assert gate.webhook(CALL, CALLER, load) == Busy(reason, load.calls)
    answered(gate.webhook(CALL, CALLER, IDLE))  # the refusal did not use up the CallSid


def test_a_replayed_webhook_gets_nothing_for_an_hour_then_is_forgotten() -> None:
    time = Time()
    gate = admission(time)
    answered(gate.webhook(CALL, CALLER, IDLE))
    time.now += REPLAY_MEMORY_SECONDS - 1
    assert gate.webhook(CALL, CALLER, IDLE) == Replayed()
    time.now += 1
    answered(gate.webhook(CALL, CALLER, IDLE))


def test_one_number_gets_so_many_calls_a_minute() -> None:
    time = Time()
    gate = admission(time, per_number=2)
    calls = iter(f"CA{n:032x}" for n in range(10))
    answered(gate.webhook(next(calls), CALLER, IDLE))
    answered(gate.webhook(next(calls), CALLER, IDLE))
    assert gate.webhook(next(calls), CALLER, IDLE) == RateLimited()
    answered(gate.webhook(next(calls), "+15559990000", IDLE))  # another number is not held up
    time.now += 60
    answered(gate.webhook(next(calls), CALLER, IDLE))


def test_a_stream_with_a_good_token_is_accepted_once() -> None:
    time = Time()
    gate = admission(time)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    assert gate.stream(CALL, token, PREWARMED, IDLE) == StreamAccepted()
    assert gate.stream(CALL, token, PREWARMED, IDLE) == Rejected("stream token already used")


def test_a_stream_token_expires_on_the_wall_clock() -> None:
    time = Time()
    gate = admission(time)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    time.now += gate.tokens.ttl + 1
    assert gate.stream(CALL, token, PREWARMED, IDLE) == Rejected("stream token expired")
    assert gate.stream(CALL, None, PREWARMED, IDLE) == Rejected("missing or malformed stream token")


def test_a_stream_for_a_call_with_a_stream_or_already_over_is_rejected() -> None:
    time = Time()
    gate = admission(time)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    attached = CallStatus(held=True, attached=True, ended=None)
    assert gate.stream(CALL, token, attached, IDLE) == Rejected("a stream is already attached to this call")
    over = CallStatus(held=False, attached=False, ended=EndCall(EndReason.CALLER_HUNG_UP, "caller hung up"))
    assert gate.stream(CALL, token, over, IDLE) == Rejected("this call already ended")
    assert gate.stream(CALL, token, PREWARMED, IDLE) == StreamAccepted()  # the rejections left the token unused


def test_a_call_that_ended_with_something_to_say_ends_its_stream_early() -> None:
    time = Time()
    gate = admission(time)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    unreachable = CallStatus(
        held=False,
        attached=False,
        ended=EndCall(EndReason.MODEL_UNREACHABLE, "model unreachable", Farewell.UNAVAILABLE),
    )
    assert gate.stream(CALL, token, unreachable, IDLE) == EndedEarly("model unreachable")


def test_a_busy_service_takes_a_prewarmed_calls_stream_but_no_stranger() -> None:
    time = Time()
    gate = admission(time, max_calls=1)
    full = Load(calls=1, draining=False)
    token = answered(gate.webhook(CALL, CALLER, IDLE))
    assert gate.stream(CALL, token, PREWARMED, full) == StreamAccepted()
    stranger = gate.tokens.issue(OTHER, time.now)  # a token from another instance behind the balancer
    assert gate.stream(OTHER, stranger, NEW, full) == Busy("at capacity", 1)


def test_an_outbound_call_is_about_the_dialled_party_not_our_own_number() -> None:
    inbound = {"Direction": "inbound", "From": "+15551234567", "To": "+15557654321"}
    outbound = {"Direction": "outbound-api", "From": "+15557654321", "To": "+15551234567"}
    assert other_party(inbound) == other_party(outbound) == ("+15551234567", "+15557654321")
    assert other_party({"From": "+15551234567", "To": "+15557654321"}) == ("+15551234567", "+15557654321")
