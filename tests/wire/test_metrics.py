"""``GET /metrics``: Prometheus text that parses, fed by a real call (greeting, barge-in, a dropped model
session, junk on the media stream, a hang-up) and by the store's writer; one registry per app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import WAIT, call_stack, heard_in_full, played_more_than
from voiceagent.call import EndReason
from voiceagent.metrics import Metrics

OPEN = {"VOICEAGENT_METRICS": "open"}  # no API token in these tests: metrics opened on purpose
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(base_url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


async def test_a_call_shows_up_in_the_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    monkeypatch.setenv("VOICEAGENT_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.delenv("VOICEAGENT_API_TOKEN", raising=False)
    async with call_stack(replies=("agent_goodbye",), env=OPEN) as stack:
        model, app = stack.model, stack.app
        before = await scrape(app.base_url)
        assert value(before, "voiceagent_calls_in_progress") == 0
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            during = await scrape(app.base_url)
            assert value(during, "voiceagent_calls_in_progress") == 1

            # the caller talks over the greeting: a barge-in and a truncation, then a turn answered
            await caller.wait_until(played_more_than(caller, 800 * 8), timeout=WAIT)
            await caller.say("caller_interrupt")
            first = model.sessions[0]
            await model.wait_for(lambda: first.truncations, timeout=WAIT)
            await model.wait_for(lambda: len(first.produced) >= 2 and not first.response_live, timeout=WAIT)
            await caller.wait_until(lambda: not caller.pending_marks and caller.clears, timeout=WAIT)

            await caller.send_frame("this is not JSON")  # junk on the media stream: one bad input

            # the model connection drops young: a failed attempt, then a second session
            await model.drop(first)
            await model.wait_for(lambda: len(model.sessions) == 2, timeout=WAIT)
            heard = len(caller.played)
            await caller.say("caller_book_table")
            await caller.wait_until(heard_in_full(caller, heard + 1), timeout=WAIT)
            await caller.hangup()
        await model.wait_for(lambda: not app.service.calls, timeout=WAIT)

        after = await scrape(app.base_url)
    assert value(after, "voiceagent_calls_in_progress") == 0
    ended = value(after, "voiceagent_calls_ended_total", reason="caller_hung_up", farewell="hang_up")
    assert ended == 1
    assert value(after, "voiceagent_time_to_first_audio_seconds_count") == 1
    assert 0 < value(after, "voiceagent_time_to_first_audio_seconds_sum") < WAIT
    assert value(after, "voiceagent_turn_latency_seconds_count") >= 1
    assert value(after, "voiceagent_barge_ins_total") >= 1
    assert value(after, "voiceagent_truncations_total") >= 1
    assert value(after, "voiceagent_bad_inputs_total") == 1
    assert value(after, "voiceagent_model_reconnects_total") == 1
    # the session that died young counts as a failed connect (on a machine slow enough to take 10 s to get
    # there it would not): the metric says what the log says
    young = [line for line in caplog_json() if line["event"] == "model_connect_failed"]
    assert value(after, "voiceagent_model_connect_failures_total") == len(young)
    assert value(after, "voiceagent_store_write_seconds_count") >= 1  # the writer thread reports too
    assert value(after, "voiceagent_store_lag_seconds_count") >= 1
    assert value(after, "voiceagent_store_backlog") == 0


async def test_an_unreachable_model_counts_connect_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEAGENT_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    async with call_stack(refuse_next=100, env={"VOICEAGENT_CONNECT_ATTEMPTS": "2", **OPEN}) as stack:
        async with stack.caller() as caller:
            assert await caller.dial()
            await caller.wait_closed(timeout=WAIT)
        await stack.model.wait_for(lambda: not stack.app.service.calls, timeout=WAIT)
        await asyncio.sleep(0)
        after = await scrape(stack.app.base_url)
    assert value(after, "voiceagent_model_connect_failures_total") == 2
    assert value(after, "voiceagent_calls_ended_total", reason="model_unreachable", farewell="unavailable")


def test_every_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # the global registry would refuse the second set of names
    one.barge_ins.inc(3)
    assert "voiceagent_barge_ins_total 3.0" in one.exposition().decode()
    assert "voiceagent_barge_ins_total 0.0" in two.exposition().decode()


def test_end_reasons_and_tools_make_labels_of_bounded_cardinality() -> None:
    metrics = Metrics(tool_names=["book_table"])
    metrics.call_ended(EndReason.MODEL_REFUSED, "unavailable", {})  # the server's words stay in the record
    ended = parse(metrics.exposition().decode())
    assert value(ended, "voiceagent_calls_ended_total", reason="model_refused", farewell="unavailable") == 1
    metrics.tool_called("book_table", True)
    metrics.tool_called("invented_by_the_model_1", False)
    metrics.tool_called("invented_by_the_model_2", False)
    samples = parse(metrics.exposition().decode())
    assert value(samples, "voiceagent_tool_calls_total", tool="book_table", outcome="ok") == 1
    assert value(samples, "voiceagent_tool_calls_total", tool="unknown", outcome="error") == 2
