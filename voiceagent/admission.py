"""Who may become a call: the service's admission policy, as a pure object fed the service's clocks.

The routes (``voiceagent.app``) only translate its verdicts into log lines, TwiML and close codes. The
rules, in the order they are checked:

* the webhook: busy (draining, or ``max_calls`` calls in progress); a replayed webhook (Twilio signatures
  carry no timestamp: a CallSid the webhook already answered gets no second stream token and no second
  pre-warmed model session); the per-number rate (calls a minute from one caller number); else the
  call is answered with a stream token bound to its CallSid;
* the stream, once its ``start`` arrived: a token valid for this call now, no stream already attached,
  the call not over, the token used only once; then an earlier end that has something to tell the
  caller (refused as busy, model unreachable) ends the stream so that Twilio asks ``/twilio/stream-ended``;
  then busy again, for a stream whose call was not pre-warmed.

No I/O and no clock of its own: ``wall`` (stream tokens cross processes) and ``monotonic`` (the replay
and rate windows) are injected, so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from voiceagent.call import EndCall, Farewell
from voiceagent.limits import RateLimit, RecentKeys
from voiceagent.twilio.security import StreamTokens

__all__ = [
    "REPLAY_MEMORY_SECONDS",
    "Admission",
    "Busy",
    "CallAnswered",
    "CallStatus",
    "EndedEarly",
    "Load",
    "RateLimited",
    "Rejected",
    "Replayed",
    "StreamAccepted",
    "StreamVerdict",
    "WebhookVerdict",
    "other_party",
]

REPLAY_MEMORY_SECONDS = 3600.0  # a CallSid seen by the webhook gets no second token or pre-warm for this long
TOKEN_REUSE_MARGIN_SECONDS = 5.0  # a used token is remembered a little past its expiry


@dataclass(frozen=True, slots=True)
class Load:
    """How busy the service is: the calls it holds (pre-warmed ones included) and whether it drains."""

    calls: int
    draining: bool


@dataclass(frozen=True, slots=True)
class CallStatus:
    """What the service knows of one CallSid when its stream starts."""

    held: bool  # the service holds a call for it (pre-warmed or running)
    attached: bool  # a stream is (or was) attached to that call
    ended: EndCall | None  # how it ended, if it ended recently (or its end is decided)


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Busy:
    """No room: the service drains or is at capacity (the caller hears the busy message)."""

    reason: str  # "draining" | "at capacity"
    calls: int


@dataclass(frozen=True, slots=True)
class Replayed:
    """The webhook for this CallSid was answered already: a replay buys nothing."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """Too many calls from this caller number in the last minute."""

    reason: str = "too many calls from this number"


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Answer with a stream: ``token`` goes into the TwiML's ``<Parameter>``."""

    token: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """This stream may not become a call (a policy violation; ``reason`` is safe to log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class EndedEarly:
    """The call ended before its stream came (refused, or the pre-warm found the model unreachable)."""

    reason: str


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The stream becomes (or joins) its call."""


WebhookVerdict = Busy | Replayed | RateLimited | CallAnswered


def other_party(params: dict[str, str]) -> tuple[str, str]:
    """(the person on the line, our number) of a voice webhook: From and To for a call that came in; To
    and From for one we placed (``Direction`` ``outbound-api`` or ``outbound-dial``), whose From is our
    own number, so that the per-number rate and the call's record are about the dialled party."""
    caller, called = params.get("From", ""), params.get("To", "")
    return (called, caller) if params.get("Direction", "inbound").startswith("outbound") else (caller, called)


StreamVerdict = Rejected | EndedEarly | Busy | StreamAccepted


class Admission:
    """The admission rules and the memory they need (recent CallSids, used tokens, calls per number)."""

    def __init__(
        self,
        tokens: StreamTokens,
        *,
        max_calls: int,
        calls_per_number_per_minute: int,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.max_calls = max_calls
        self._wall = wall
        self._monotonic = monotonic
        self.webhooks_seen = RecentKeys(REPLAY_MEMORY_SECONDS)  # a CallSid gets one token and one pre-warm
        self.tokens_used = RecentKeys(tokens.ttl + TOKEN_REUSE_MARGIN_SECONDS)  # a stream token works once
        self.calls_per_number = RateLimit(calls_per_number_per_minute)

    def busy(self, load: Load) -> Busy | None:
        if load.draining:
            return Busy("draining", load.calls)
        if load.calls >= self.max_calls:
            return Busy("at capacity", load.calls)
        return None

    def webhook(self, call_sid: str, caller: str, load: Load) -> WebhookVerdict:
        """Twilio's incoming-call webhook for ``call_sid`` from ``caller`` (its From, possibly empty)."""
        busy = self.busy(load)
        if busy is not None:
            return busy
        now = self._monotonic()
        if not self.webhooks_seen.add(call_sid, now):
            return Replayed()
        if not self.calls_per_number.allow(caller, now):
            return RateLimited()
        return CallAnswered(self.tokens.issue(call_sid, self._wall()))

    def rejoin(self, call_sid: str) -> str:
        """A stream token for a call coming back from a transfer nobody took (the webhook is not asked again)."""
        return self.tokens.issue(call_sid, self._wall())

    def stream(self, call_sid: str, token: str | None, call: CallStatus, load: Load) -> StreamVerdict:
        """A media stream whose ``start`` names ``call_sid`` and carries ``token``."""
        problem = self.tokens.check(token, call_sid, self._wall())
        if problem is not None:
            return Rejected(problem)
        if call.held and call.attached:
            return Rejected("a stream is already attached to this call")
        if call.ended is not None and call.ended.farewell is Farewell.HANG_UP:
            return Rejected("this call already ended")
        if not self.tokens_used.add(token or "", self._monotonic()):
            return Rejected("stream token already used")
        if call.ended is not None:  # a farewell to say: Twilio asks /twilio/stream-ended, which says it
            return EndedEarly(call.ended.detail)
        busy = self.busy(load)
        if busy is not None and not call.held:
            return busy
        return StreamAccepted()
