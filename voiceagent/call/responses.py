"""The one owner of the model's responses: the response in flight and the reasons queued to ask for one.

The Realtime service runs one response at a time and refuses a ``response.create`` while one is
requested or in progress; with server VAD it also answers each caller turn by itself (docs/protocol.md
§2, "Responses: one at a time"). So a response is asked for only while none is requested or in
progress (``ResponsePhase``) and the caller is not speaking; every other reason to speak waits in
``Reasons`` and is asked for at the next ``response.done``. A failed response is asked again once after a
back-off, then the call ends with the apology. Every reason ends in a ``ReasonsAnswered`` or a
``ReasonDropped`` fact.

The deadlines: a caller turn no response answered, a request never created, a response never done (the
no-answer guard), and the back-off or the wait for the server's own answer to a caller turn.
"""

from __future__ import annotations

import re

from voiceagent.call.actions import Action, Log, SendToModel
from voiceagent.call.deadlines import earliest
from voiceagent.call.observations import ReasonDropped, ReasonsAnswered, ResponseRefused
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import RESPONSE_MOVES, ResponsePhase, checked_move
from voiceagent.call.reasons import Reason, ReasonKind, Reasons
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev

__all__ = ["Responses", "retry_delay"]

TEXT_ANSWER_CHARS = 500  # an answer that came as text, in its warning
VAD_ANSWER_WAIT_SECONDS = 1.0  # a caller turn ended: the server's own response is awaited this long first
FAILURES_IN_A_ROW = 2  # a failed response is asked again once; the second failure in a row ends the call
RETRY_HINT_CAP_SECONDS = 10.0
_HINT = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)", re.IGNORECASE)

NONE, REQUESTED, IN_PROGRESS = ResponsePhase.NONE, ResponsePhase.REQUESTED, ResponsePhase.IN_PROGRESS


def retry_delay(detail: str | None, default: float) -> float:
    """The back-off before asking again: the service's "try again in N s" hint if it gave one (capped)."""
    match = _HINT.search(detail or "")
    if match is None:
        return default
    seconds = float(match.group(1)) / (1000 if match.group(2).lower() == "ms" else 1)
    return min(max(seconds, default), RETRY_HINT_CAP_SECONDS)


def _kinds(reasons: list[Reason]) -> tuple[str, ...]:
    return tuple(reason.kind.value for reason in reasons)


class Responses:
    def __init__(self, options: CallOptions) -> None:
        self.phase = NONE
        self.live: str | None = None  # the response in progress
        self.caller_speaking = False
        self.answer_due: float | None = None  # the caller's turn ended and no response has started yet
        self.with_audio: set[str] = set()  # responses that produced audio (added to on the hot path)
        self.model_ready = False
        self.ending = False  # the call is ending: only closing words are still asked for
        self._options = options
        self._reasons = Reasons()
        self._asked: list[Reason] = []  # what the request in flight, or the response in progress, answers
        self._since: float | None = None  # when the request was sent, or the response created
        self._retry_at: float | None = None  # a failed response's back-off: nothing is asked before
        self._vad_wait_until: float | None = None  # the server's own answer to a caller turn is awaited
        self._failed_in_a_row = 0
        self._text_answers: dict[str, str] = {}  # response id -> text of an answer that came as text
        self._text_recoveries = 0

    def _enter(self, phase: ResponsePhase) -> None:
        self.phase = checked_move(RESPONSE_MOVES, self.phase, phase)

    @property
    def busy(self) -> bool:
        """A response is requested or in progress."""
        return self.phase is not NONE

    @property
    def idle(self) -> bool:
        """No response is requested or in progress, none is waiting to be, and the caller is not speaking."""
        return self.phase is NONE and not self.caller_speaking and not self._reasons

    @property
    def queued(self) -> int:
        return len(self._reasons)

    # ------------------------------------------------------------ reasons to speak

    def add(self, kind: ReasonKind, now: float, instructions: str | None = None) -> list[Action]:
        """A reason to speak: asked for now if a response may be, else queued."""
        if self.ending and kind is not ReasonKind.CLOSING:
            return [ReasonDropped(kind.value, "the call is ending")]
        replaced = self._reasons.add(Reason(kind, instructions))
        actions: list[Action] = [ReasonDropped(replaced.kind.value, "superseded")] if replaced else []
        return actions + self.pump(now)

    def greet(self, session: int, now: float) -> list[Action]:
        """The greeting, once, from the call's first session."""
        if not self._options.greeting or session != 1:
            return []
        instructions = greeting_instructions(self._options.session.instructions, self._options.greeting)
        return self.add(ReasonKind.GREETING, now, instructions)

    def operator_line(self, text: str, now: float) -> list[Action]:
        words = f"{self._options.session.instructions}\n\nSay exactly this to the caller now, and nothing else: {text}"
        return self.add(ReasonKind.OPERATOR_LINE, now, words)

    def wind_down(self, why: str) -> list[Action]:
        """The call is ending: every reason but the closing words is dropped."""
        self.ending = True
        dropped = self._reasons.drop(keep=frozenset({ReasonKind.CLOSING}))
        return [ReasonDropped(reason.kind.value, why) for reason in dropped]

    def call_ended(self) -> list[Action]:
        """The call is over: whatever is still queued never will be answered."""
        self.ending = True
        gone = self._reasons.drop()
        return [ReasonDropped(reason.kind.value, "the call ended") for reason in gone]

    def pump(self, now: float) -> list[Action]:
        """Ask for the next reasons, if a response may be asked for now."""
        if self.phase is not NONE or not self.model_ready or self.caller_speaking or not self._reasons:
            return []
        if (self._retry_at is not None and now < self._retry_at) or (
            self._vad_wait_until is not None and now < self._vad_wait_until
        ):
            return []
        self._retry_at = self._vad_wait_until = None
        asked = self._asked = self._reasons.take()
        self._enter(REQUESTED)
        self._since = now
        instructions = asked[0].instructions if len(asked) == 1 else None
        answered = ReasonsAnswered(_kinds(asked), "request", self._failed_in_a_row + 1)
        return [answered, SendToModel(ev.CreateResponse(instructions))]

    # ------------------------------------------------------------ the model's responses

    def created(self, response_id: str, now: float) -> tuple[list[Action], bool]:
        """A response started: ours, or the server's own after a caller turn (which answers the plain
        reasons queued so far: the model sees them). True if it is the closing words."""
        self.answer_due = self._vad_wait_until = None
        actions: list[Action] = []
        if self.phase is not REQUESTED:
            self._asked = self._reasons.take_plain(self._reasons.mark)
            if self._asked:
                actions.append(ReasonsAnswered(_kinds(self._asked), "caller_turn"))
        self._enter(IN_PROGRESS)
        self.live, self._since = response_id, now
        return actions, any(reason.kind is ReasonKind.CLOSING for reason in self._asked)

    def done(self, response_id: str, status: str, detail: str | None, now: float) -> tuple[list[Action], bool]:
        """The response in progress ended. A failed one is asked again once (after the back-off); True if
        it failed again and the call must end with the apology."""
        if self.phase is not IN_PROGRESS or response_id != self.live:
            return [], False
        asked, self._asked = self._asked, []
        self._enter(NONE)
        self.live = self._since = None
        if status != "failed":
            self._failed_in_a_row = 0
            return [], False
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= FAILURES_IN_A_ROW:
            self.ending = True
            gone = asked + self._reasons.drop()
            return [ReasonDropped(reason.kind.value, "the model failed to answer") for reason in gone], True
        self._reasons.put_back(asked or [Reason(ReasonKind.CALLER_TURN)])
        self._retry_at = now + retry_delay(detail, self._options.response_retry_seconds)
        return [], False

    def refused(self, message: str, now: float) -> list[Action]:
        """The model refused our request: one was active after all. What it was for is asked again later."""
        if self.phase is REQUESTED:
            self._reasons.put_back(self._asked)
            self._asked = []
            self._enter(NONE)
            self._since = None
            self._retry_at = now + self._options.response_retry_seconds
        else:  # the response we took for ours is the server's: it answers only the plain reasons
            self._reasons.put_back([reason for reason in self._asked if not reason.plain])
            self._asked = [reason for reason in self._asked if reason.plain]
        return [ResponseRefused(message)]

    def text_delta(self, response_id: str, delta: str) -> None:
        self._text_answers[response_id] = self._text_answers.get(response_id, "") + delta

    def answered_in_text(self, response_id: str, session: ev.SessionConfig, now: float) -> list[Action]:
        """A response that produced text and no audio: the caller heard silence. Say so, and once per call
        ask again for speech (re-sending the session's audio configuration first)."""
        text = self._text_answers.pop(response_id, None)
        had_audio = response_id in self.with_audio
        self.with_audio.discard(response_id)
        if text is None or had_audio:
            return []
        actions: list[Action] = [Log("warning", "model_answered_in_text", {"text": text[:TEXT_ANSWER_CHARS]})]
        if self._text_recoveries == 0 and self.model_ready:
            self._text_recoveries += 1
            actions += [SendToModel(ev.UpdateSession(session)), *self.add(ReasonKind.SPEECH_RECOVERY, now)]
        return actions

    # ------------------------------------------------------------ the caller and the session

    def speech_started(self) -> None:
        self.caller_speaking = True
        self.answer_due = self._vad_wait_until = None

    def speech_stopped(self, now: float) -> None:
        """The caller's turn ended: unless a response is in progress, the server answers it by itself."""
        self.caller_speaking = False
        if self.phase is IN_PROGRESS:
            return
        self._vad_wait_until = now + VAD_ANSWER_WAIT_SECONDS
        if self._options.answer_timeout_seconds is not None:
            self.answer_due = now + self._options.answer_timeout_seconds

    def barge_in(self) -> list[Action]:
        """The caller talks over a live response: cancel it, unless turn detection does that itself."""
        if self.phase is IN_PROGRESS and not self._options.server_interrupts:
            return [SendToModel(ev.CancelResponse())]
        return []

    def session_ready(self, now: float) -> list[Action]:
        self.model_ready = True
        return self.pump(now)

    def session_opened(self) -> list[Action]:
        """A new session knows nothing of a response of the old one: what it was for is asked again (but
        the greeting: the conversation is under way)."""
        if self.phase is not NONE:
            self._enter(NONE)
        self._reasons.put_back(self._asked)
        self._asked = []
        self.live = self._since = self._vad_wait_until = None
        self.caller_speaking = self.model_ready = False
        greeting = self._reasons.drop(keep=frozenset(ReasonKind) - {ReasonKind.GREETING})
        return [ReasonDropped(reason.kind.value, "the model session was replaced") for reason in greeting]

    def session_lost(self) -> list[Action]:
        self.answer_due = None
        return self.session_opened()

    # ------------------------------------------------------------ the deadlines (the model ready)

    def deadline(self) -> float | None:
        options, since = self._options, self._since
        due = self.answer_due
        if self.phase is REQUESTED and since is not None and options.answer_timeout_seconds is not None:
            due = earliest(due, since + options.answer_timeout_seconds)
        elif self.phase is IN_PROGRESS and since is not None and options.response_done_seconds is not None:
            due = earliest(due, since + options.response_done_seconds)
        elif self.phase is NONE and self._reasons and not self.caller_speaking:
            due = earliest(due, earliest(self._retry_at, self._vad_wait_until))
        return due

    def unanswered_by(self, now: float) -> str | None:
        """What the model left unanswered by ``now``, if anything: the call cannot go on."""
        if not self.model_ready:
            return None
        if self.answer_due is not None and now >= self.answer_due:
            return "caller_turn"
        options, since = self._options, self._since
        if self.phase is REQUESTED and since is not None and options.answer_timeout_seconds is not None:
            return "request" if now >= since + options.answer_timeout_seconds else None
        if self.phase is IN_PROGRESS and since is not None and options.response_done_seconds is not None:
            return "response" if now >= since + options.response_done_seconds else None
        return None
