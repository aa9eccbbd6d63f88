"""The agent's audio on its way to the caller: each model delta played (or held until the caller's stream
is up), each item's words gathered, every item recorded once heard, and the barge-in that cuts what is
playing where the caller is (docs/protocol.md §2, "The truncate rule": at ``min(heard, produced)`` in ms,
never past what the model produced, never past what the caller heard). The accounting is ``Playback``'s."""

from __future__ import annotations

from voiceagent.audio import b64_decoded_length
from voiceagent.call.actions import Action, ClearPlayback, Log, PlayAudio, SendToModel
from voiceagent.call.figures import CallFigures
from voiceagent.call.observations import BargeIn
from voiceagent.call.options import CallOptions
from voiceagent.call.playback import AgentItem, Playback
from voiceagent.call.responses import Responses
from voiceagent.call.transcript import Transcript
from voiceagent.realtime import events as ev

__all__ = ["AgentAudio"]


class AgentAudio:
    def __init__(self, options: CallOptions, *, transcript: Transcript, responses: Responses, figures: CallFigures):
        self.playback = Playback(options.bytes_per_ms)
        self._bytes_per_ms = options.bytes_per_ms
        self._report_grace = options.playback_report_grace_seconds
        self._transcript = transcript
        self._responses = responses
        self._figures = figures
        self._response_items: dict[str, list[str]] = {}

    @property
    def audible(self) -> bool:
        return self.playback.agent_audible

    def _item_of_response(self, item_id: str, response_id: str, session: int) -> AgentItem:
        item = self.playback.item(item_id, session)
        items = self._response_items.setdefault(response_id, [])
        if item_id not in items:
            items.append(item_id)
        return item

    # ------------------------------------------------------------ the model's side

    def delta(self, event: ev.AudioDelta, session: int, ready: bool, stream_up: bool, now: float) -> list[Action]:
        """A chunk of agent audio (the hot path): play it, or hold it until the caller's stream is up."""
        item = self._item_of_response(event.item_id, event.response_id, session)
        if item.truncated:
            return []  # a late delta of an item the caller talked over
        if not ready:
            return [Log("warning", "model_audio_before_session_ready", {"item_id": item.item_id})]
        self._responses.with_audio.add(event.response_id)
        item.received += b64_decoded_length(event.audio)
        if not stream_up:
            self.playback.held.append((item.item_id, event.audio))
            return []
        return self._play(item, event.audio, now)

    def _play(self, item: AgentItem, payload: str, now: float) -> list[Action]:
        size = b64_decoded_length(payload)
        self.playback.sent(item, size, now)
        self._figures.bytes_out += size
        self._figures.agent_audio(now)
        return [PlayAudio(item.item_id, payload, item.sent)]

    def words(self, item_id: str, delta: str, session: int) -> None:
        item = self.playback.item(item_id, session)
        if not item.truncated and not item.text_done:
            item.text += delta

    def audio_done(self, item_id: str, response_id: str, session: int) -> list[Action]:
        item = self._item_of_response(item_id, response_id, session)
        item.audio_done = True
        return self._transcript.record_if_heard(item)

    def words_done(self, item_id: str, transcript: str, session: int) -> list[Action]:
        item = self.playback.item(item_id, session)
        if item.truncated:
            return []
        item.text, item.text_done = transcript, True
        return self._transcript.record_if_heard(item)

    def response_done(self, response_id: str, session: int) -> list[Action]:
        """Every item of the response is complete: record those already heard, forget those over."""
        actions: list[Action] = []
        for item_id in self._response_items.pop(response_id, []):
            item = self.playback.item(item_id, session)
            item.audio_done = item.text_done = True
            actions += self._transcript.record_if_heard(item)
            self.playback.forget_if_over(item)
        return actions

    # ------------------------------------------------------------ the caller's side

    def stream_started(self, session: int, now: float) -> list[Action]:
        """The caller's stream is up: play what was held for it."""
        held, self.playback.held = self.playback.held, []
        actions: list[Action] = []
        for item_id, payload in held:
            item = self.playback.item(item_id, session)
            if not item.truncated:  # cut before the caller could hear any of it: nothing to play
                actions += self._play(item, payload, now)
        return actions

    def played(self, item_id: str, offset: int, now: float) -> list[Action] | None:
        """The transport's report; None if it names an item never played."""
        item = self.playback.items.get(item_id)
        if item is None:
            return [] if self.playback.forgot(item_id) else None  # a late report for an item that is over
        self.playback.played(item, offset, now)
        actions = self._transcript.record_if_heard(item)
        self.playback.forget_if_over(item)
        return actions

    def barge_in(self, session: int, *, stream_up: bool, now: float) -> list[Action]:
        """The caller speaks: stop the agent at once and tell the model exactly how much was heard."""
        speaking = self.playback.speaking()
        if not speaking:
            return []
        self._figures.barge_ins += 1
        actions: list[Action] = [ClearPlayback()] if stream_up else []
        self.playback.held.clear()
        heard = [self.playback.heard(item, now) for item in speaking]  # all before any cut
        for item, heard_bytes in zip(speaking, heard, strict=True):
            actions += self._truncate(item, heard_bytes, session)
        return actions

    def _truncate(self, item: AgentItem, heard_bytes: int, session: int) -> list[Action]:
        self.playback.truncate(item, heard_bytes)
        heard_ms = item.heard_ms(self._bytes_per_ms)
        if item.session != session:
            # the item lives in a model session that is gone: nothing to truncate there
            return [BargeIn(item.item_id, heard_ms, None), *self._transcript.record_agent(item)]
        self._figures.truncations += 1
        produced_ms = item.received // self._bytes_per_ms
        return [
            SendToModel(ev.Truncate(item.item_id, heard_ms)),
            BargeIn(item.item_id, heard_ms, produced_ms),
            *self._transcript.record_agent(item),
        ]

    # ------------------------------------------------------------ reports that never come, and the end

    def deadline(self) -> float | None:
        if self._report_grace is None or not self.playback.in_flight:
            return None
        return self.playback.playing_until + self._report_grace

    def reports_missing_by(self, now: float) -> list[Action]:
        """Reports this late must have been lost: count the audio heard, and record what that finishes."""
        grace = self._report_grace
        if grace is None or not self.playback.in_flight or now < self.playback.playing_until + grace:
            return []
        actions: list[Action] = [Log("warning", "playback_reports_missing", {"late_s": grace})]
        for item in self.playback.assume_played():
            actions += self._transcript.record_if_heard(item)
        return actions

    def record_all(self) -> list[Action]:
        """The call ends: every agent item not recorded yet is recorded, as far as it was heard."""
        actions: list[Action] = []
        for item in self.playback.items.values():
            actions += self._transcript.record_agent(item)
        return actions
