"""Per-call figures for the ``call_ended`` log line: time to first agent audio, per-turn latency
(caller stops speaking → first agent audio), and token usage from ``response.done``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from voiceagent.realtime import events as ev


@dataclass
class CallMetrics:
    started_at: float | None = None  # when the caller's stream started
    first_audio_at: float | None = None
    turn_latencies_ms: list[int] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    _caller_stopped_at: float | None = None

    def stream_started(self, now: float) -> None:
        self.started_at = now

    def observe(self, event: ev.ModelEvent, now: float) -> None:
        if isinstance(event, ev.AudioDelta):
            if self.first_audio_at is None:
                self.first_audio_at = now
            if self._caller_stopped_at is not None:
                self.turn_latencies_ms.append(round((now - self._caller_stopped_at) * 1000))
                self._caller_stopped_at = None
        elif isinstance(event, ev.SpeechStopped):
            self._caller_stopped_at = now
        elif isinstance(event, ev.SpeechStarted):
            self._caller_stopped_at = None
        elif isinstance(event, ev.ResponseDone) and event.usage:
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                value = event.usage.get(key)
                if isinstance(value, int):
                    self.tokens[key] = self.tokens.get(key, 0) + value

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"turns": len(self.turn_latencies_ms), **self.tokens}
        if self.started_at is not None and self.first_audio_at is not None:
            figures["first_audio_ms"] = max(0, round((self.first_audio_at - self.started_at) * 1000))
        if self.turn_latencies_ms:
            figures["turn_latency_ms_median"] = round(statistics.median(self.turn_latencies_ms))
            figures["turn_latency_ms_max"] = max(self.turn_latencies_ms)
        return figures
