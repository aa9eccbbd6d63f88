"""The per-call state machine: sans-I/O, like h11 or the websockets protocol layer.

``CallCore`` takes events from both sides — Twilio messages (``voiceagent.twilio.messages``) and model
events (``voiceagent.realtime.events``) — and returns the actions to carry out: messages to send to
Twilio, commands to send to the model, transcript lines to record, and a request to end the call. It
never touches a socket or a clock, so tests drive it with plain lists of events.

Barge-in accounting (PROTOCOLS.md §2, "the truncate rule"): for every assistant audio item we count the
bytes the model sent us and the bytes Twilio has acknowledged as played through marks. Each audio delta
goes to Twilio as one ``media`` followed by one ``mark`` covering everything of that item up to there.
When the caller starts speaking over unplayed audio we ``clear`` Twilio and truncate the item at
``min(acknowledged, received) / 8`` ms — never past what the model produced, never past what was heard.
Marks still in flight at the ``clear`` are echoed by Twilio at once ("played or cleared"), so they are
void: their echoes are expected and change nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import count

from voiceagent.actions import Action, EndCall, Log, ToModel, ToTwilio, Transcript
from voiceagent.prompts import goodbye_instructions, greeting_instructions
from voiceagent.realtime import events as ev
from voiceagent.realtime.errors import WARNING_ERROR_CODES
from voiceagent.twilio import messages as tw

__all__ = ["Action", "CallCore", "CallOptions", "EndCall", "Log", "ToModel", "ToTwilio", "Transcript"]

BYTES_PER_MS = 8  # μ-law, 8 kHz, mono

# ---------------------------------------------------------------- per-item and per-mark state


@dataclass(slots=True)
class AgentItem:
    """One assistant audio item: what the model sent, what reached Twilio, what Twilio played."""

    item_id: str
    received: int = 0  # bytes of audio the model sent for this item
    forwarded: int = 0  # bytes sent on to Twilio
    acked: int = 0  # bytes Twilio confirmed played (mark echoes)
    audio_done: bool = False
    text: str = ""
    text_done: bool = False
    truncated: bool = False
    logged: bool = False
    generation: int = 0  # which model session produced it (a reconnect starts a new one)

    @property
    def unplayed(self) -> int:
        return self.received - self.acked

    @property
    def heard_ms(self) -> int:
        return min(self.acked, self.received) // BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class CallOptions:
    greeting: str = ""  # what the agent says first; empty: wait for the caller
    server_interrupts: bool = True  # turn detection cancels the live response itself on speech
    max_call_seconds: float | None = None  # then the agent says goodbye and the call ends
    caller_silence_seconds: float | None = None  # no caller speech for this long: goodbye, end
    goodbye_grace_seconds: float = 20.0  # a goodbye that has not finished by then is cut short


@dataclass(frozen=True, slots=True)
class Utterance:
    role: str  # "caller" | "agent"
    text: str


class CallCore:
    """The decisions of one call. Feed it events; carry out the actions it returns, in order."""

    def __init__(self, options: CallOptions | None = None, *, call_sid: str | None = None) -> None:
        self.options = options or CallOptions()
        self.call_sid = call_sid
        self.stream_sid: str | None = None
        self.session_ready = False
        self.greeted = False
        self.response_live = False
        self.ended: str | None = None
        self.items: OrderedDict[str, AgentItem] = OrderedDict()
        self.history: list[Utterance] = []
        self._marks: OrderedDict[str, tuple[str, int]] = OrderedDict()  # name -> (item_id, offset)
        self._void_marks: set[str] = set()
        self._unsent: list[tuple[str, str]] = []  # (item_id, payload) held until the stream starts
        self._mark_numbers = count(1)
        self._response_items: dict[str, list[str]] = {}
        self.stats = {"bytes_in": 0, "bytes_out": 0, "barge_ins": 0, "truncations": 0, "model_sessions": 1}
        self.generation = 0
        self.caller_speaking = False
        self.started_at: float | None = None  # clock of the first tick
        self.last_activity: float | None = None
        self.now: float | None = None
        self.winding_down: str | None = None  # why the call is ending, once the goodbye is under way
        self._goodbye_asked = False
        self._goodbye_started = False  # the model began the goodbye response
        self._goodbye_deadline: float | None = None

    # ------------------------------------------------------------ Twilio side

    def twilio_event(self, message: tw.TwilioEvent) -> list[Action]:
        if isinstance(message, tw.Start):
            return self._start(message)
        if isinstance(message, tw.Connected):
            return []
        if self.stream_sid is None:
            return [Log("warning", "twilio_before_start", {"message": type(message).__name__})]
        if message.stream_sid != self.stream_sid:
            return [Log("warning", "twilio_wrong_stream", {"message": type(message).__name__})]
        if isinstance(message, tw.Media):
            self.stats["bytes_in"] += tw.b64_decoded_length(message.payload)
            return [ToModel(ev.AppendAudio(message.payload))]
        if isinstance(message, tw.MarkEcho):
            return self._mark_echoed(message.name)
        if isinstance(message, tw.Stop):
            return [EndCall("caller hung up")]
        if isinstance(message, tw.Dtmf):
            return [Log("info", "dtmf", {"digit": message.digit})]
        return []

    def _start(self, start: tw.Start) -> list[Action]:
        if self.stream_sid is not None:
            return [Log("warning", "twilio_second_start", {})]
        self.stream_sid = start.stream_sid
        self.call_sid = self.call_sid or start.call_sid
        actions: list[Action] = []
        unsent, self._unsent = self._unsent, []
        for item_id, payload in unsent:
            actions += self._forward(self.items[item_id], payload)
        return actions

    def _mark_echoed(self, name: str) -> list[Action]:
        if name in self._void_marks:
            self._void_marks.discard(name)
            return []
        entry = self._marks.pop(name, None)
        if entry is None:
            return [Log("warning", "twilio_unknown_mark", {"mark": name[:40]})]
        item_id, offset = entry
        item = self.items[item_id]
        item.acked = max(item.acked, offset)
        self.last_activity = self.now
        return self._maybe_finish(item) + self._maybe_hang_up()

    # ------------------------------------------------------------ model side

    def model_event(self, event: ev.ModelEvent) -> list[Action]:
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler else []

    def _session_updated(self, event: ev.SessionUpdated) -> list[Action]:
        if event.input_format != "pcmu" or event.output_format != "pcmu":
            return [
                Log(
                    "error",
                    "model_audio_format_refused",
                    {"input_format": event.input_format, "output_format": event.output_format},
                ),
                EndCall(f"the model will not use μ-law (input {event.input_format}, output {event.output_format})"),
            ]
        actions: list[Action] = []
        if not self.session_ready:
            self.session_ready = True
            actions.append(Log("info", "model_session_ready", {}))
        if self.options.greeting and not self.greeted:
            self.greeted = True
            actions.append(ToModel(ev.CreateResponse(greeting_instructions(self.options.greeting))))
        return actions + self._maybe_say_goodbye()

    def _speech_started(self, event: ev.SpeechStarted) -> list[Action]:
        """Barge-in: stop the agent at once and tell the model exactly how much was heard."""
        self.caller_speaking = True
        self.last_activity = self.now
        speaking = [item for item in self.items.values() if not item.truncated and item.unplayed > 0]
        actions: list[Action] = []
        if speaking:
            self.stats["barge_ins"] += 1
            if self.stream_sid is not None:
                actions.append(ToTwilio(tw.ClearAudio()))
            self._void_marks.update(self._marks)
            self._marks.clear()
            self._unsent.clear()
            for item in speaking:
                actions += self._truncate(item)
        if self.response_live and not self.options.server_interrupts:
            actions.append(ToModel(ev.CancelResponse()))
        return actions

    def _speech_stopped(self, event: ev.SpeechStopped) -> list[Action]:
        self.caller_speaking = False
        self.last_activity = self.now
        return []

    def _truncate(self, item: AgentItem) -> list[Action]:
        item.truncated = True
        heard_ms = item.heard_ms
        if item.generation != self.generation:
            # the item lives in a model session that is gone: nothing to truncate there
            return [Log("info", "barge_in", {"item_id": item.item_id, "heard_ms": heard_ms, "previous_session": True}),
                    *self._log_agent(item)]
        self.stats["truncations"] += 1
        return [
            ToModel(ev.Truncate(item.item_id, heard_ms)),
            Log("info", "barge_in", {"item_id": item.item_id, "heard_ms": heard_ms,
                                     "produced_ms": item.received // BYTES_PER_MS}),
            *self._log_agent(item),
        ]

    def _audio_delta(self, event: ev.AudioDelta) -> list[Action]:
        item = self._item(event.item_id, event.response_id)
        if item.truncated:
            return []  # a late delta of an item the caller talked over
        item.received += tw.b64_decoded_length(event.audio)
        if self.stream_sid is None:
            self._unsent.append((item.item_id, event.audio))
            return []
        return self._forward(item, event.audio)

    def _forward(self, item: AgentItem, payload: str) -> list[Action]:
        item.forwarded += tw.b64_decoded_length(payload)
        self.stats["bytes_out"] += tw.b64_decoded_length(payload)
        name = f"m{next(self._mark_numbers)}"
        self._marks[name] = (item.item_id, item.forwarded)
        return [ToTwilio(tw.PlayAudio(payload)), ToTwilio(tw.SetMark(name))]

    def _audio_done(self, event: ev.AudioDone) -> list[Action]:
        item = self._item(event.item_id, event.response_id)
        item.audio_done = True
        return self._maybe_finish(item)

    def _transcript_delta(self, event: ev.AgentTranscriptDelta) -> list[Action]:
        item = self._item(event.item_id)
        if not item.truncated and not item.text_done:
            item.text += event.delta
        return []

    def _transcript_done(self, event: ev.AgentTranscriptDone) -> list[Action]:
        item = self._item(event.item_id)
        if item.truncated:
            return []
        item.text, item.text_done = event.transcript, True
        return self._maybe_finish(item)

    def _response_created(self, event: ev.ResponseCreated) -> list[Action]:
        self.response_live = True
        self._goodbye_started = self._goodbye_asked
        return []

    def _response_done(self, event: ev.ResponseDone) -> list[Action]:
        self.response_live = False
        actions: list[Action] = [Log("info", "response_done", {"status": event.status, "usage": event.usage})]
        for item_id in self._response_items.pop(event.response_id, []):
            item = self.items[item_id]
            item.audio_done = item.text_done = True
            actions += self._maybe_finish(item)
        return actions + self._maybe_say_goodbye() + self._maybe_hang_up()

    def _caller_transcript(self, event: ev.CallerTranscript) -> list[Action]:
        text = event.transcript.strip()
        if not text:
            return []
        self.history.append(Utterance("caller", text))
        return [Transcript("caller", text, item_id=event.item_id)]

    def _error(self, event: ev.ModelError) -> list[Action]:
        """Model errors are logged, never fatal: a session that is really gone closes its socket."""
        level = "warning" if event.code in WARNING_ERROR_CODES else "error"
        return [Log(level, "model_error", {"code": event.code, "message": event.message})]

    # ------------------------------------------------------------ transcripts

    def _item(self, item_id: str, response_id: str | None = None) -> AgentItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AgentItem(item_id, generation=self.generation)
        if response_id is not None and item_id not in self._response_items.setdefault(response_id, []):
            self._response_items[response_id].append(item_id)
        return item

    def _maybe_finish(self, item: AgentItem) -> list[Action]:
        if item.logged or item.truncated or not (item.audio_done and item.text_done):
            return []
        if item.acked < item.received:
            return []  # still playing: it may yet be interrupted
        return self._log_agent(item)

    def _log_agent(self, item: AgentItem) -> list[Action]:
        if item.logged:
            return []
        item.logged = True
        text = item.text.strip()
        if not text and not item.received:
            return []
        interrupted = item.truncated or item.acked < item.received
        if text:
            self.history.append(Utterance("agent", text))
        return [Transcript("agent", text, interrupted=interrupted,
                           heard_ms=item.heard_ms if interrupted else None, item_id=item.item_id)]

    # ------------------------------------------------------------ time, goodbyes, model sessions

    @property
    def agent_speaking(self) -> bool:
        return bool(self._marks) or bool(self._unsent)

    @property
    def quiet(self) -> bool:
        """Nobody is talking and nothing is being generated: a safe moment to swap model sessions."""
        return not (self.response_live or self.caller_speaking or self.agent_speaking)

    def tick(self, now: float) -> list[Action]:
        """The driver's clock (seconds, monotonic). Enforces the call length and caller-silence limits."""
        self.now = now
        if self.started_at is None:
            self.started_at = self.last_activity = now
        if self.winding_down:
            if self._goodbye_deadline is not None and now >= self._goodbye_deadline:
                return [EndCall(self.winding_down)]
            return []
        limit = self.options.max_call_seconds
        if limit is not None and now - self.started_at >= limit:
            return self.wind_down("the call reached its maximum length")
        silence = self.options.caller_silence_seconds
        if (
            silence is not None
            and self.last_activity is not None
            and not self.caller_speaking
            and not self.agent_speaking
            and not self.response_live
            and now - self.last_activity >= silence
        ):
            return self.wind_down("the caller was silent")
        return []

    def wind_down(self, reason: str) -> list[Action]:
        """End the call politely: the agent says goodbye, then the call ends (or at the grace deadline)."""
        if self.winding_down:
            return []
        self.winding_down = reason
        if self.now is not None:
            self._goodbye_deadline = self.now + self.options.goodbye_grace_seconds
        if not self.session_ready:
            return [EndCall(reason)]
        return [Log("info", "winding_down", {"reason": reason}), *self._maybe_say_goodbye()]

    def _maybe_say_goodbye(self) -> list[Action]:
        if not self.winding_down or self._goodbye_asked or self.response_live:
            return []
        self._goodbye_asked = True
        return [ToModel(ev.CreateResponse(goodbye_instructions(self.winding_down)))]

    def _maybe_hang_up(self) -> list[Action]:
        if self._goodbye_started and not self.response_live and not self.agent_speaking:
            return [EndCall(self.winding_down or "goodbye said")]
        return []

    def model_reconnected(self) -> list[Action]:
        """A new model session replaces the old one: configure it and replay the conversation so far.

        Audio of the old session still playing to the caller stays, but can no longer be truncated."""
        self.generation += 1
        self.stats["model_sessions"] += 1
        self.response_live = False
        self.caller_speaking = False
        self.session_ready = False
        if self.winding_down:
            self._goodbye_asked = self._goodbye_started = False  # ask the new session for the goodbye
        roles = {"caller": "user", "agent": "assistant"}
        return [ToModel(ev.CreateTextItem(roles[u.role], u.text)) for u in self.history]

    def finish(self) -> list[Action]:
        """The call is over: log every agent line not logged yet (cut off if it was still playing)."""
        actions: list[Action] = []
        for item in self.items.values():
            actions += self._log_agent(item)
        return actions


_HANDLERS = {
    ev.SessionUpdated: CallCore._session_updated,
    ev.SpeechStarted: CallCore._speech_started,
    ev.SpeechStopped: CallCore._speech_stopped,
    ev.AudioDelta: CallCore._audio_delta,
    ev.AudioDone: CallCore._audio_done,
    ev.AgentTranscriptDelta: CallCore._transcript_delta,
    ev.AgentTranscriptDone: CallCore._transcript_done,
    ev.ResponseCreated: CallCore._response_created,
    ev.ResponseDone: CallCore._response_done,
    ev.CallerTranscript: CallCore._caller_transcript,
    ev.ModelError: CallCore._error,
}
