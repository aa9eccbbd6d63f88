"""The response owner's slot: whether a model response is live, and every decision to ask the model for
one (the greeting, a goodbye, an operator's line, tool results, a key press, a retry in speech) or to
cancel one. Today's rules, kept in one place so that turn-taking can replace them as one part.

A response is requested only while none is live (tool results: and the caller is not speaking); the
caller's turn that got no response by ``answer_timeout_seconds`` is the model gone quiet.
"""

from __future__ import annotations

from voiceagent.call.actions import Action, Log, SendToModel
from voiceagent.call.options import CallOptions
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev

__all__ = ["Responses"]

TEXT_ANSWER_CHARS = 500  # an answer that came as text, in its warning


class Responses:
    def __init__(self, options: CallOptions) -> None:
        self.live: str | None = None  # the response under way
        self.caller_speaking = False
        self.answer_due: float | None = None  # the caller's turn ended and no response has started yet
        self.with_audio: set[str] = set()  # responses that produced audio (added to on the hot path)
        self._options = options
        self._text_answers: dict[str, str] = {}  # response id -> text of an answer that came as text
        self._text_recoveries = 0
        self._operator_lines: list[str] = []  # what an operator asked the agent to say, in order

    @property
    def idle(self) -> bool:
        """No response is live and the caller is not speaking."""
        return self.live is None and not self.caller_speaking

    # ------------------------------------------------------------ what the model and the caller do

    def created(self, response_id: str) -> None:
        self.live = response_id
        self.answer_due = None

    def done(self, response_id: str) -> None:
        if self.live == response_id:
            self.live = None

    def speech_started(self) -> None:
        self.caller_speaking = True
        self.answer_due = None

    def speech_stopped(self, now: float) -> None:
        self.caller_speaking = False
        if self._options.answer_timeout_seconds is not None:
            self.answer_due = now + self._options.answer_timeout_seconds

    def session_opened(self) -> None:
        self.live = None
        self.caller_speaking = False

    def session_lost(self) -> None:
        self.session_opened()
        self.answer_due = None

    def text_delta(self, response_id: str, delta: str) -> None:
        self._text_answers[response_id] = self._text_answers.get(response_id, "") + delta

    # ------------------------------------------------------------ asking for a response

    def greet(self, session: int) -> list[Action]:
        """The greeting, once, from the call's first session."""
        if not self._options.greeting or session != 1:
            return []
        instructions = greeting_instructions(self._options.session.instructions, self._options.greeting)
        return [SendToModel(ev.CreateResponse(instructions))]

    def goodbye(self, instructions: str) -> list[Action]:
        return [] if self.live is not None else [SendToModel(ev.CreateResponse(instructions))]

    def queue_operator_line(self, text: str) -> None:
        self._operator_lines.append(text)

    def operator_line(self) -> list[Action]:
        """The next line an operator asked for, once no response is live."""
        if not self._operator_lines or self.live is not None:
            return []
        text = self._operator_lines.pop(0)
        words = f"{self._options.session.instructions}\n\nSay exactly this to the caller now, and nothing else: {text}"
        return [SendToModel(ev.CreateResponse(words))]

    def after_tool_results(self, ask_again: bool) -> list[Action]:
        return [SendToModel(ev.CreateResponse())] if ask_again and self.idle else []

    def after_key_press(self) -> list[Action]:
        return [] if self.live is not None else [SendToModel(ev.CreateResponse())]

    def barge_in(self) -> list[Action]:
        """The caller talks over a live response: cancel it, unless turn detection does that itself."""
        if self.live is not None and not self._options.server_interrupts:
            return [SendToModel(ev.CancelResponse())]
        return []

    def answered_in_text(self, response_id: str, model_ready: bool, session: ev.SessionConfig) -> list[Action]:
        """A response that produced text and no audio: the caller heard silence. Say so, and once per call
        ask again for speech (re-sending the session's audio configuration first)."""
        text = self._text_answers.pop(response_id, None)
        had_audio = response_id in self.with_audio
        self.with_audio.discard(response_id)
        if text is None or had_audio:
            return []
        actions: list[Action] = [Log("warning", "model_answered_in_text", {"text": text[:TEXT_ANSWER_CHARS]})]
        if self._text_recoveries == 0 and model_ready:
            self._text_recoveries += 1
            actions += [SendToModel(ev.UpdateSession(session)), SendToModel(ev.CreateResponse())]
        return actions

    # ------------------------------------------------------------ the deadline: ``answer_due`` (model ready)

    def unanswered_by(self, now: float, model_ready: bool) -> bool:
        return self.answer_due is not None and model_ready and now >= self.answer_due
