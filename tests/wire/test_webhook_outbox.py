"""Undelivered call-ended webhooks are kept in the store: what is pending at shutdown, or still failing
when its retry window runs out, is delivered after a restart (and while running), once it can be."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.helpers import WAIT
from voiceagent.call_webhook import CallEndedWebhook
from voiceagent.metrics import Metrics
from voiceagent.store import CallStore, RecordsSettings
from voiceagent.store.outbox import WebhookOutbox
from voiceagent.testing import wait_until

SECRET = "9f2c4e1a7b3d5f60a8c2e4b6d8f01357"


async def test_a_delivery_the_receiver_missed_is_delivered_after_a_restart(tmp_path: Path) -> None:
    settings = RecordsSettings.sqlite(tmp_path / "calls.db")
    received: list[dict[str, object]] = []
    receiver_up = {"up": False}

    def receiver(request: httpx.Request) -> httpx.Response:
        if not receiver_up["up"]:
            return httpx.Response(503)
        received.append(json.loads(request.content))
        return httpx.Response(204)

    # the first run: the receiver is down for longer than the retry window
    store = CallStore(settings)
    store.open()
    metrics = Metrics()
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    first = CallEndedWebhook(
        "https://hooks.example.com/x", SECRET, metrics=metrics, client=client, attempts=2, first_delay=0.01,
        outbox=WebhookOutbox(store), resume_every=3600,
    )  # fmt: skip
    first.start()
    assert first.submit("CA1", {"call": {"call_sid": "CA1"}, "transcript": []})
    await wait_until(lambda: first.pending == 0 and not first._in_flight, WAIT)
    await first.aclose()
    assert store.flush(WAIT)
    assert len(await WebhookOutbox(store).pending()) == 1  # kept, not dropped
    store.close()

    # the restart: the receiver is back
    receiver_up["up"] = True
    store = CallStore(settings)
    store.open()
    outbox = WebhookOutbox(store)
    second = CallEndedWebhook(
        "https://hooks.example.com/x", SECRET, client=client, first_delay=0.01, outbox=outbox, resume_every=3600
    )
    second.start()
    await wait_until(lambda: len(received) == 1, WAIT)
    await second.aclose()
    assert store.flush(WAIT)
    assert await outbox.pending() == []  # delivered: no longer kept
    store.close()
    await client.aclose()
    assert received[0]["call"] == {"call_sid": "CA1"}


async def test_a_delivery_refused_for_good_is_not_kept(tmp_path: Path) -> None:
    store = CallStore(RecordsSettings.sqlite(tmp_path / "calls.db"))
    store.open()
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(410)))
    outbox = WebhookOutbox(store)
    webhook = CallEndedWebhook("https://hooks.example.com/x", SECRET, client=client, outbox=outbox, resume_every=3600)
    webhook.start()
    webhook.submit("CA2", {"call": {}, "transcript": []})
    await wait_until(lambda: webhook.pending == 0 and not webhook._in_flight, WAIT)
    await webhook.aclose()
    assert store.flush(WAIT)
    assert await outbox.pending() == []
    store.close()
    await client.aclose()
