"""What was said, as the transcript records it and as a replacing model session is told it: caller turns,
agent items (cut to the words the caller heard), tool lines. Each line is a ``RecordLine`` action and,
when it has words, a line of the bounded ``History``."""

from __future__ import annotations

from voiceagent.call.actions import Action, RecordLine
from voiceagent.call.history import History
from voiceagent.call.playback import AgentItem
from voiceagent.prompts import conversation_so_far
from voiceagent.transcripts import TranscriptLine

__all__ = ["Transcript", "heard_words"]


def heard_words(text: str, fraction: float) -> str:
    """The words of ``text`` the caller heard, when ``fraction`` of its audio played: the model's words
    arrive with its audio, so they are cut in the same proportion, at a word boundary. (The server deletes
    the unheard part of its own transcript on truncate; the transcript we keep says the same.)"""
    limit = fraction * len(text)
    words = text.split(" ")
    kept: list[str] = []
    end = 0
    for word in words:
        end += len(word) + (1 if kept else 0)
        if end > limit:
            break
        kept.append(word)
    return " ".join(kept)


class Transcript:
    def __init__(self, call_sid: str, *, history_chars: int, bytes_per_ms: int) -> None:
        self.history = History(history_chars)
        self._call_sid = call_sid
        self._bytes_per_ms = bytes_per_ms

    def conversation(self, prompt: str) -> str:
        """Instructions for a session that replaces another: ``prompt`` and the conversation so far."""
        return conversation_so_far(prompt, self.history, left_out=self.history.left_out)

    def caller_said(self, text: str) -> list[Action]:
        if not text:
            return []
        return self._said(TranscriptLine(self._call_sid, "caller", text))

    def tool_line(self, text: str) -> list[Action]:
        return self._said(TranscriptLine(self._call_sid, "tool", text))

    def key_pressed(self) -> list[Action]:
        """A key press, without the key (the caller's secret), and not part of the history."""
        return [RecordLine(TranscriptLine(self._call_sid, "caller", "(pressed a key)"))]

    def keyed(self, entry: str) -> list[Action]:
        """A whole keypad entry: in the history (a replacing session is told it), never in the record."""
        self.history.add(TranscriptLine(self._call_sid, "caller", f"(keyed {entry})"))
        return []

    def operator_note(self, text: str) -> None:
        """An operator's note: in the history, so that a replacing session is told it too."""
        self.history.add(TranscriptLine(self._call_sid, "operator", text))

    def _said(self, line: TranscriptLine) -> list[Action]:
        self.history.add(line)
        return [RecordLine(line)]

    def record_if_heard(self, item: AgentItem) -> list[Action]:
        """Record an agent item once it is generated in full and heard to its end (or cut)."""
        if item.recorded or item.truncated or not (item.audio_done and item.text_done):
            return []
        if item.played < item.received:
            return []  # still playing: it may yet be interrupted
        return self.record_agent(item)

    def record_agent(self, item: AgentItem) -> list[Action]:
        """Record an agent item now, cut to what the caller heard if it was interrupted."""
        if item.recorded:
            return []
        item.recorded = True
        text = item.text.strip()
        if not text and not item.received:
            return []
        interrupted = item.truncated or item.played < item.received
        heard_ms = item.heard_ms(self._bytes_per_ms) if interrupted else None
        if interrupted and item.received:
            text = heard_words(text, min(item.played, item.received) / item.received)
        line = TranscriptLine(self._call_sid, "agent", text, interrupted, heard_ms)
        if text:
            self.history.add(line)
        return [RecordLine(line, item.item_id)]
