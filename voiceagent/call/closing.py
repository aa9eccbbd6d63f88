"""How the call ends, and when: the call's phase (moves checked against ``CALL_MOVES``), the one way out
(``end``: the caller's last words sent, every agent line recorded, the call summed up), the polite end
(``wind_down``: a goodbye asked of the model, cut short at a grace deadline), the agent's own closing
words (it hung up or transferred), and the limits that start a goodbye or end the call (call length,
caller silence, a pre-warmed session no stream came for). Time is an argument."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voiceagent.call.actions import Action, EndCall, Log
from voiceagent.call.agent_audio import AgentAudio
from voiceagent.call.caller_input import CallerInput
from voiceagent.call.deadlines import earliest
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.figures import CallFigures
from voiceagent.call.guards import WarningLimiter
from voiceagent.call.link import ModelLink
from voiceagent.call.observations import CallEnded
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import CALL_MOVES, GOODBYE_PHASES, CallCoreError, CallPhase, checked_move
from voiceagent.call.reasons import ReasonKind
from voiceagent.call.responses import Responses
from voiceagent.prompts import closing_words_instructions, goodbye_instructions

__all__ = ["Closing", "Due", "EndTerms", "earliest"]  # earliest: re-exported for the core


@dataclass(frozen=True, slots=True)
class EndTerms:
    reason: EndReason
    detail: str
    farewell: Farewell = Farewell.HANG_UP
    transfer_to: str | None = None


@dataclass(frozen=True, slots=True)
class Due:
    """What a deadline of the closing asks for: end now, wind down (a goodbye first), or end the goodbye."""

    kind: Literal["end", "wind_down", "goodbye_over"]
    reason: EndReason = EndReason.INTERNAL_ERROR
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Sources:
    """The parts whose state the end gathers (last words, unrecorded lines, figures) or waits on."""

    link: ModelLink
    responses: Responses
    audio: AgentAudio
    caller: CallerInput
    figures: CallFigures
    warnings: WarningLimiter


class Closing:
    def __init__(self, options: CallOptions, now: float, sources: Sources) -> None:
        self.phase = CallPhase.AWAITING_STREAM  # read on the hot path: a plain attribute, set only by ``_enter``
        self.created_at = now
        self.last_activity = now  # someone spoke or heard something (the caller-silence limit)
        self._options = options
        self._of = sources
        self._why: EndTerms | None = None  # the end a goodbye leads to
        self._goodbye_deadline: float | None = None
        self._closing_instructions: str | None = None  # the agent closed without a word: what to ask for

    def _enter(self, phase: CallPhase) -> None:
        self.phase = checked_move(CALL_MOVES, self.phase, phase)

    @property
    def ending(self) -> bool:
        """A goodbye is under way, or the call is over."""
        return self.phase in GOODBYE_PHASES or self.phase is CallPhase.ENDED

    def stream_started(self, now: float) -> bool:
        """The caller's stream is up; False if it was up already."""
        if self.phase is not CallPhase.AWAITING_STREAM:
            return False
        self._enter(CallPhase.IN_CALL)
        self.last_activity = now
        return True

    def end(self, terms: EndTerms, now: float) -> list[Action]:
        """The one way out: the caller's last words to the model, every agent line not recorded yet
        recorded, the call summed up and ended. Nothing once the call is over."""
        if self.phase is CallPhase.ENDED:
            return []
        self._enter(CallPhase.ENDED)
        of, figures = self._of, self._of.figures
        actions = of.caller.last_words() if of.link.ready else []
        actions += of.audio.record_all() + of.responses.call_ended()
        duration = round(now - (figures.stream_started_at or self.created_at), 3)
        summary = {"reason": terms.detail, "duration_s": duration, **figures.summary()}
        if not_logged := of.warnings.not_logged():
            summary["warnings_not_logged"] = not_logged
        end = EndCall(terms.reason, terms.detail, terms.farewell, terms.transfer_to, summary)
        return [*actions, CallEnded(terms.reason, terms.detail, summary), end]

    # ------------------------------------------------------------ goodbyes

    def wind_down(self, reason: EndReason, detail: str, now: float) -> list[Action]:
        """End politely: ask for a goodbye (``detail`` says why), and end once it is heard or at the grace
        deadline. At once if there is nobody to say it to, or no model to say it."""
        if self.ending:
            return []
        if self.phase is CallPhase.AWAITING_STREAM or not self._of.link.ready:
            return self.end(EndTerms(reason, detail), now)
        self._enter(CallPhase.GOODBYE_PENDING)
        self._why = EndTerms(reason, detail)
        self._goodbye_deadline = now + self._options.goodbye_grace_seconds
        dropped = self._of.responses.wind_down("the call is ending")
        return [Log("info", "winding_down", {"reason": detail}), *dropped, *self.say_goodbye(now)]

    def agent_closes(self, end: EndCall, now: float, *, said: bool) -> list[Action] | None:
        """The agent hung up or transferred: its closing words are heard, then ``end``. If it said none
        (``said`` False), a short goodbye or hand-over line is asked of the model first, within the same
        grace. None out of call."""
        if self.phase is not CallPhase.IN_CALL:
            return None
        self._why = EndTerms(end.reason, end.detail, end.farewell, end.transfer_to)
        self._goodbye_deadline = now + self._options.goodbye_grace_seconds
        dropped = self._of.responses.wind_down("the agent is closing the call")
        if said:
            self._enter(CallPhase.GOODBYE_SPEAKING)
            return dropped
        self._closing_instructions = closing_words_instructions(
            self._options.session.instructions, transfer=end.farewell is Farewell.TRANSFER
        )
        self._enter(CallPhase.GOODBYE_PENDING)
        return dropped + self.say_goodbye(now)

    def say_goodbye(self, now: float) -> list[Action]:
        """Ask for the goodbye (it is spoken once no response is live), if one is pending and the model is up."""
        if self.phase is not CallPhase.GOODBYE_PENDING or not self._of.link.ready or self._why is None:
            return []
        self._enter(CallPhase.GOODBYE_REQUESTED)
        instructions = self._closing_instructions or goodbye_instructions(
            self._options.session.instructions, self._why.detail
        )
        return self._of.responses.add(ReasonKind.CLOSING, now, instructions)

    def response_started(self, closing_words: bool) -> None:
        """A response started; ``closing_words``: it is the goodbye asked for."""
        if self.phase is CallPhase.GOODBYE_REQUESTED and closing_words:
            self._enter(CallPhase.GOODBYE_SPEAKING)

    def session_replaced(self) -> None:
        """A new model session knows nothing of a goodbye under way: ask it again."""
        if self.phase in (CallPhase.GOODBYE_REQUESTED, CallPhase.GOODBYE_SPEAKING):
            self._enter(CallPhase.GOODBYE_PENDING)

    def end_if_goodbye_heard(self, now: float) -> list[Action]:
        """The goodbye (or the agent's closing words) is over and heard: end the call."""
        if self.phase is not CallPhase.GOODBYE_SPEAKING or self._of.responses.busy:
            return []
        return [] if self._of.audio.audible else self.end_after_goodbye(now)

    def end_after_goodbye(self, now: float) -> list[Action]:
        """End the way the goodbye (or the agent's closing words) was leading to."""
        if self._why is None:
            raise CallCoreError("a goodbye ended with no end to lead to")
        return self.end(self._why, now)

    # ------------------------------------------------------------ deadlines

    def deadline(self, quiet: bool, stream_started_at: float | None) -> float | None:
        """The earliest of this part's deadlines (read after every input: no list, no ``min``)."""
        options = self._options
        phase = self.phase
        if phase is CallPhase.IN_CALL:
            due = None
            if options.max_call_seconds is not None:
                due = (stream_started_at or self.created_at) + options.max_call_seconds
            if quiet and options.caller_silence_seconds is not None:
                due = earliest(due, self.last_activity + options.caller_silence_seconds)
            return due
        if phase is CallPhase.AWAITING_STREAM:
            wait = options.stream_wait_seconds
            return None if wait is None else self.created_at + wait
        return self._goodbye_deadline if phase in GOODBYE_PHASES else None

    def due(self, now: float, quiet: bool, stream_started_at: float | None) -> Due | None:
        options = self._options
        if self.phase is CallPhase.AWAITING_STREAM:
            if options.stream_wait_seconds is not None and now >= self.created_at + options.stream_wait_seconds:
                return Due("end", EndReason.NO_STREAM, "no media stream arrived for the pre-warmed session")
        elif self.phase in GOODBYE_PHASES:
            if self._goodbye_deadline is not None and now >= self._goodbye_deadline:
                return Due("goodbye_over")
        elif self.phase is CallPhase.IN_CALL:
            started = stream_started_at or self.created_at
            if options.max_call_seconds is not None and now >= started + options.max_call_seconds:
                return Due("wind_down", EndReason.MAX_LENGTH, "the call reached its maximum length")
            silence = options.caller_silence_seconds
            if silence is not None and quiet and now >= self.last_activity + silence:
                return Due("wind_down", EndReason.CALLER_SILENT, "the caller was silent")
        return None
