"""Prometheus metrics, one ``CollectorRegistry`` per app (no module-level state: tests run several apps).

Fed by the service's hooks (a call's end and its ``EndCall.summary``, tool calls, connect failures),
by the store's writer thread and by the call-ended webhook; served at ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from voiceagent.call.endings import EndReason
from voiceagent.store.writer import WriterObserver

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics(WriterObserver):
    """Every metric of one app. ``calls_in_progress`` reads a callable at scrape time."""

    def __init__(self, calls_in_progress: Callable[[], int] = lambda: 0, tool_names: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tool_names = frozenset(tool_names)
        self.in_progress = Gauge("voiceagent_calls_in_progress", "Calls in progress on this instance.", registry=r)
        self.in_progress.set_function(lambda: float(calls_in_progress()))
        self.calls_ended = Counter(
            "voiceagent_calls_ended",
            "Calls ended, by end reason (an EndReason value).",
            ["reason", "farewell"],
            registry=r,
        )
        # eval calls (voiceagent eval) are kept out of every per-call figure above and below, so that
        # dashboards and alerts built on them see the callers' experience only; they are counted here
        self.eval_calls_ended = Counter(
            "voiceagent_eval_calls_ended",
            "Eval calls (voiceagent eval) ended, by end reason; not in the other per-call figures.",
            ["reason", "farewell"],
            registry=r,
        )
        self.time_to_greeting = Histogram(
            "voiceagent_time_to_first_audio_seconds",
            "From the stream's start to the agent's first audio (the greeting, or the first answer).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            "voiceagent_turn_latency_seconds",
            "From the end of the caller's turn to the agent's first audio.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_ins = Counter("voiceagent_barge_ins", "Times callers talked over the agent.", registry=r)
        self.truncations = Counter("voiceagent_truncations", "Agent items truncated at a barge-in.", registry=r)
        self.model_reconnects = Counter(
            "voiceagent_model_reconnects", "Model sessions beyond each call's first (reconnects, recycles).", registry=r
        )
        self.connect_failures = Counter(
            "voiceagent_model_connect_failures",
            "Failed model connects (including sessions that died young).",
            registry=r,
        )
        self.tool_calls = Counter(
            "voiceagent_tool_calls", "Tool calls by the agent, by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.bad_inputs = Counter("voiceagent_bad_inputs", "Malformed messages on media streams.", registry=r)
        self.recordings_incomplete = Counter(
            "voiceagent_recordings_incomplete", "Recordings cut short by a failed write (a full disk).", registry=r
        )
        self.store_write = Histogram(
            "voiceagent_store_write_seconds", "Store transactions (one per batch).", buckets=_STORE_BUCKETS, registry=r
        )
        self.store_lag = Histogram(
            "voiceagent_store_lag_seconds",
            "From a write being queued to its commit (the oldest of each batch).",
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self.store_batch_size = Histogram(
            "voiceagent_store_batch_size",
            "Writes per store transaction.",
            buckets=(1, 2, 5, 10, 50, 100, 500),
            registry=r,
        )
        self.store_lost = Counter("voiceagent_store_writes_lost", "Store writes dropped.", ["reason"], registry=r)
        self.store_failures = Counter("voiceagent_store_write_failures", "Failed store transactions.", registry=r)
        self.store_backlog = Gauge("voiceagent_store_backlog", "Writes queued for the store.", registry=r)
        self.webhook_deliveries = Counter(
            "voiceagent_call_ended_webhook_deliveries",
            "Call-ended webhook deliveries, by outcome (delivered, failed, dropped).",
            ["outcome"],
            registry=r,
        )
        self.webhook_attempts_failed = Counter(
            "voiceagent_call_ended_webhook_failed_attempts", "Call-ended webhook attempts that failed.", registry=r
        )
        self.event_subscribers_dropped = Counter(
            "voiceagent_event_subscribers_dropped", "Live-event subscribers dropped for reading too slowly.", registry=r
        )

    # ------------------------------------------------------------ calls

    def call_ended(
        self, reason: EndReason, farewell: str, summary: dict[str, object], turn_latencies_ms: Iterable[int] = ()
    ) -> None:
        """A call's end: ``reason`` is a closed set, so the label's cardinality is bounded by design."""
        self.calls_ended.labels(reason=reason.value, farewell=farewell).inc()
        first_audio = summary.get("first_audio_ms")
        if isinstance(first_audio, int):
            self.time_to_greeting.observe(first_audio / 1000)
        for latency in turn_latencies_ms:
            self.turn_latency.observe(latency / 1000)
        self.barge_ins.inc(_count(summary, "barge_ins"))
        self.truncations.inc(_count(summary, "truncations"))
        self.model_reconnects.inc(max(0, _count(summary, "model_sessions") - 1))
        self.bad_inputs.inc(_count(summary, "bad_inputs"))

    def eval_call_ended(self, reason: EndReason, farewell: str) -> None:
        """An eval call's end: counted apart, its figures left out of the callers'."""
        self.eval_calls_ended.labels(reason=reason.value, farewell=farewell).inc()

    def tool_called(self, name: str, ok: bool) -> None:
        """``name`` is a label only if it is a declared tool: the model can make up names."""
        tool = name if name in self.tool_names else "unknown"
        self.tool_calls.labels(tool=tool, outcome="ok" if ok else "error").inc()

    # ------------------------------------------------------------ the store's writer (its thread)

    def batch_written(self, size: int, transaction_seconds: float, lag_seconds: float) -> None:
        self.store_write.observe(transaction_seconds)
        self.store_lag.observe(lag_seconds)
        self.store_batch_size.observe(size)

    def writes_lost(self, count: int, reason: str) -> None:
        self.store_lost.labels(reason=reason).inc(count)

    def write_failed(self) -> None:
        self.store_failures.inc()

    # ------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _count(summary: dict[str, object], key: str) -> int:
    value = summary.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
