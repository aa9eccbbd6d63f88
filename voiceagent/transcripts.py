"""Transcript records and where they go.

Every finished utterance becomes one ``TranscriptLine``. The sink is a small seam: today it writes a
JSON log line per utterance; durable storage plugs in behind the same ``record`` method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from voiceagent.logs import CallLog


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    call_sid: str | None
    role: str  # "caller" | "agent" | "tool" (a tool call and its result, or the agent hanging up or transferring)
    text: str
    interrupted: bool = False
    heard_ms: int | None = None  # agent lines cut off: how much of the audio the caller heard


class TranscriptSink(Protocol):
    def record(self, line: TranscriptLine) -> None: ...


class LogTranscriptSink:
    """Writes ``{"event": "transcript", "call_sid", "role", "text", "interrupted"[, "heard_ms"]}``."""

    def record(self, line: TranscriptLine) -> None:
        fields = asdict(line)
        call_sid = fields.pop("call_sid")
        if fields["heard_ms"] is None:
            del fields["heard_ms"]
        CallLog(call_sid).info("transcript", **fields)


class MemoryTranscriptSink:
    """Keeps lines in memory (tests, and a building block for custom sinks)."""

    def __init__(self) -> None:
        self.lines: list[TranscriptLine] = []

    def record(self, line: TranscriptLine) -> None:
        self.lines.append(line)


class FanoutSink:
    """Records every line in each of several sinks; one failing sink does not stop the others."""

    def __init__(self, *sinks: TranscriptSink) -> None:
        self.sinks = sinks

    def record(self, line: TranscriptLine) -> None:
        for sink in self.sinks:
            try:
                sink.record(line)
            except Exception:
                CallLog(line.call_sid).error("transcript_sink_failed", sink=type(sink).__name__)
