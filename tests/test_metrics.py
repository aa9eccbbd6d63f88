"""Per-call figures: time to first audio, turn latency, tokens."""

from __future__ import annotations

from voiceagent.metrics import CallMetrics
from voiceagent.realtime import events as ev


def test_figures_from_a_sequence_of_events():
    metrics = CallMetrics()
    metrics.stream_started(10.0)
    metrics.observe(ev.AudioDelta("r1", "a1", "AAAA"), 10.25)
    metrics.observe(ev.ResponseDone("r1", "completed", {"input_tokens": 100, "output_tokens": 40, "total_tokens": 140}), 11)
    metrics.observe(ev.SpeechStarted("u1", 0), 14.0)
    metrics.observe(ev.SpeechStopped("u1", 900), 15.0)
    metrics.observe(ev.AudioDelta("r2", "a2", "AAAA"), 15.6)
    metrics.observe(ev.AudioDelta("r2", "a2", "AAAA"), 15.7)  # not a new turn
    metrics.observe(ev.SpeechStopped("u2", 2000), 20.0)
    metrics.observe(ev.AudioDelta("r3", "a3", "AAAA"), 20.9)
    metrics.observe(ev.ResponseDone("r3", "completed", {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}), 21)
    assert metrics.summary() == {
        "turns": 2,
        "first_audio_ms": 250,
        "turn_latency_ms_median": 750,
        "turn_latency_ms_max": 900,
        "input_tokens": 110,
        "output_tokens": 45,
        "total_tokens": 155,
    }


def test_greeting_generated_before_the_stream_counts_as_immediate():
    metrics = CallMetrics()
    metrics.observe(ev.AudioDelta("r", "a", "AAAA"), 1.0)
    metrics.stream_started(2.0)
    assert metrics.summary()["first_audio_ms"] == 0


def test_speech_started_without_stop_does_not_count_a_turn():
    metrics = CallMetrics()
    metrics.observe(ev.SpeechStopped("u", 1), 1.0)
    metrics.observe(ev.SpeechStarted("u2", 2), 1.5)
    metrics.observe(ev.AudioDelta("r", "a", "AAAA"), 2.0)
    assert metrics.summary()["turns"] == 0
