"""The line's health at a glance, for the console: the figures ``/metrics`` serves (read from the same
Prometheus registry) and, from the call records, the last hour's calls in five-minute steps. Real calls
only, as ``/metrics``: the eval calls (``voiceagent eval``) are left out of both."""

from __future__ import annotations

import math
import time
from typing import Any

from prometheus_client import CollectorRegistry

from voiceagent.service import Service

__all__ = ["health", "histogram_quantile"]

HOUR_SECONDS = 3600.0
STEP_SECONDS = 300.0
MAX_CALLS_READ = 500  # an hour busier than this shows its latest 500 calls (and says so: "capped")
FAILED_FAREWELLS = frozenset({"unavailable"})  # the model could not be reached or gave up on the call


def _buckets(registry: CollectorRegistry, name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets as (upper bound, count), +Inf last."""
    found = []
    for metric in registry.collect():
        if metric.name != name:
            continue
        for sample in metric.samples:
            if sample.name == f"{name}_bucket":
                found.append((float(sample.labels["le"]), sample.value))
    return sorted(found)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's ``histogram_quantile``: linear within the bucket the rank falls in; None if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # past the last finite bound: that bound is all we know
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def _quantiles_ms(registry: CollectorRegistry, name: str) -> dict[str, int | None]:
    buckets = _buckets(registry, name)
    answer: dict[str, int | None] = {"count": int(buckets[-1][1]) if buckets else 0}
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        value = histogram_quantile(buckets, q)
        answer[label] = None if value is None else round(value * 1000)
    return answer


async def health(service: Service) -> dict[str, Any]:
    """Everything the health view draws, as JSON."""
    registry = service.recorder.metrics.registry
    now = time.time()
    steps = int(HOUR_SECONDS // STEP_SECONDS)
    calls_per_step, failures_per_step = [0] * steps, [0] * steps
    capped = False
    store = service.recorder.store
    if store is not None:
        page = await store.read(lambda: store.list_calls(since=now - HOUR_SECONDS, limit=MAX_CALLS_READ))
        capped = page.next_cursor is not None
        for call in page.calls:
            step = min(steps - 1, max(0, int((call.started_at - (now - HOUR_SECONDS)) // STEP_SECONDS)))
            calls_per_step[step] += 1
            if call.farewell in FAILED_FAREWELLS or (call.ended_at is not None and call.answered_at is None):
                failures_per_step[step] += 1
    reconnects = registry.get_sample_value("voiceagent_model_reconnects_total") or 0.0
    return {
        "calls_in_progress": len(service.calls),
        "max_calls": service.settings.max_calls,
        "last_hour": {
            "calls": sum(calls_per_step),
            "failures": sum(failures_per_step),
            "step_seconds": STEP_SECONDS,
            "calls_per_step": calls_per_step,
            "failures_per_step": failures_per_step,
            "capped": capped,
        },
        "time_to_greeting_ms": _quantiles_ms(registry, "voiceagent_time_to_first_audio_seconds"),
        "turn_latency_ms": _quantiles_ms(registry, "voiceagent_turn_latency_seconds"),
        "model_reconnects": int(reconnects),
        "live_turn_latency_ms": {
            sid: list(bridge.core.figures.turn_latencies_ms) for sid, bridge in list(service.calls.items())
        },
    }
