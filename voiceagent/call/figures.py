"""Per-call figures for the ``call_ended`` line: time to first agent audio, turn latency, tokens, counts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallFigures"]

_TOKEN_KEYS = ("input_tokens", "output_tokens", "total_tokens")


@dataclass(slots=True)
class CallFigures:
    bytes_in: int = 0
    bytes_out: int = 0
    barge_ins: int = 0
    truncations: int = 0
    model_sessions: int = 0
    bad_inputs: int = 0
    transcription_failures: int = 0
    caller_bytes_dropped: int = 0  # caller audio that never reached the model (backlog overflow)
    stream_started_at: float | None = None
    first_audio_at: float | None = None
    turn_latencies_ms: list[int] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    caller_stopped_at: float | None = None  # a turn is waiting for its first agent audio

    def agent_audio(self, now: float) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = now
        if self.caller_stopped_at is not None:
            self.turn_latencies_ms.append(round((now - self.caller_stopped_at) * 1000))
            self.caller_stopped_at = None

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        for key in _TOKEN_KEYS:
            value = (usage or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                self.tokens[key] = self.tokens.get(key, 0) + value

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "barge_ins": self.barge_ins,
            "truncations": self.truncations,
            "model_sessions": self.model_sessions,
            "bad_inputs": self.bad_inputs,
            "transcription_failures": self.transcription_failures,
            "caller_bytes_dropped": self.caller_bytes_dropped,
            "turns": len(self.turn_latencies_ms),
            **self.tokens,
        }
        if self.stream_started_at is not None and self.first_audio_at is not None:
            figures["first_audio_ms"] = max(0, round((self.first_audio_at - self.stream_started_at) * 1000))
        if self.turn_latencies_ms:
            figures["turn_latency_ms_median"] = round(statistics.median(self.turn_latencies_ms))
            figures["turn_latency_ms_max"] = max(self.turn_latencies_ms)
        return figures
