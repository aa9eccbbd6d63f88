"""``VOICEAGENT_CALL_ENDED_WEBHOOK``: after each call, POST its record and transcript as JSON.

The body is signed: ``X-Voiceagent-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 of
``"<t>." + raw body`` keyed with ``VOICEAGENT_WEBHOOK_SECRET``. The timestamp is signed with the body, so a
receiver that checks it is recent (``verify_signature``: five minutes by default) refuses a captured
request replayed later. ``X-Voiceagent-Delivery`` is the same on every attempt of one delivery, so
receivers can drop repeats within the tolerance.

Deliveries never hold a call up: ``submit`` only queues (bounded; beyond ``max_pending`` a delivery is
dropped and counted). A few workers post with ``httpx.AsyncClient``, each attempt bounded as a whole (a
receiver dripping one byte at a time cannot hold a worker past ``timeout``), retrying timeouts, transport errors,
408/425/429 and 5xx with exponential back-off and jitter (``Retry-After`` honoured), up to ``attempts``
times; any other answer ends the delivery. Outcomes are counted in the metrics and logged, never with
the URL (it may carry credentials) or the body (it carries the transcript).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from voiceagent.logs import CallLog
from voiceagent.metrics import Metrics

__all__ = ["SIGNATURE_HEADER", "CallEndedWebhook", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Voiceagent-Signature"
DELIVERY_HEADER = "X-Voiceagent-Delivery"
EVENT = "call.ended"
RETRIED_STATUSES = frozenset({408, 425, 429})
SIGNATURE_TOLERANCE_SECONDS = 300.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """For receivers: the signature is ours and no older (or newer) than ``tolerance_seconds``. In full::

    fields = dict(part.split("=", 1) for part in request.headers["X-Voiceagent-Signature"].split(","))
    signed = fields["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= 300
    """
    if header is None:
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, digest = fields.get("t", ""), fields.get("v1")
    if digest is None or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, int(stamp)), f"t={stamp},v1={digest}")


class KeptDelivery(Protocol):
    @property
    def delivery_id(self) -> str: ...
    @property
    def call_sid(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


class DeliveryOutbox(Protocol):
    """Where undelivered deliveries are kept (``voiceagent.store.outbox.WebhookOutbox``)."""

    def keep(self, delivery_id: str, call_sid: str, payload: dict[str, Any]) -> None: ...
    def done(self, delivery_id: str) -> None: ...
    def pending(self) -> Awaitable[Sequence[KeptDelivery]]: ...


RESUME_EVERY_SECONDS = 300.0


class CallEndedWebhook:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        metrics: Metrics | None = None,
        client: httpx.AsyncClient | None = None,
        attempts: int = 6,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 10.0,
        max_pending: int = 1000,
        workers: int = 4,
        outbox: DeliveryOutbox | None = None,
        resume_every: float = RESUME_EVERY_SECONDS,
    ) -> None:
        self.url = url
        self._secret = secret
        self._metrics = metrics
        self._client = client
        self._owns_client = client is None
        self._attempts = max(1, attempts)
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._timeout = timeout
        self._queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue(max_pending)
        self._outbox = outbox
        self._resume_every = resume_every
        self._in_flight: set[str] = set()  # delivery ids queued or being delivered
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._host = urlsplit(url).hostname or "?"
        self._log = CallLog()

    def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"call-ended-webhook-{n}") for n in range(self._workers)]
        if self._outbox is not None:
            self._tasks.append(loop.create_task(self._resume(), name="call-ended-webhook-resume"))

    def submit(self, call_sid: str, payload: dict[str, Any], *, delivery_id: str | None = None) -> bool:
        """Queue a delivery; never waits. With an outbox it is kept there until the receiver has it, so a
        queue that is full, a shutdown or a long outage only delays it. False (logged, counted) when too
        many are pending."""
        resumed = delivery_id is not None
        delivery = delivery_id or str(uuid.uuid4())
        if delivery in self._in_flight:
            return True
        if self._outbox is not None and not resumed:
            self._outbox.keep(delivery, call_sid, payload)
        try:
            self._queue.put_nowait((delivery, call_sid, payload))
        except asyncio.QueueFull:
            if self._outbox is not None:
                CallLog(call_sid).warning("call_ended_webhook_deferred", reason="too many deliveries pending")
                return True
            self._outcome("dropped")
            CallLog(call_sid).error("call_ended_webhook_dropped", reason="too many deliveries pending")
            return False
        self._in_flight.add(delivery)
        return True

    async def _resume(self) -> None:
        """Deliver again what the outbox still holds: at start (pending before a restart), then now and then
        (deliveries whose retry window ran out while the receiver was down)."""
        assert self._outbox is not None
        while True:
            try:
                for kept in await self._outbox.pending():
                    if kept.delivery_id not in self._in_flight:
                        self.submit(kept.call_sid, kept.payload, delivery_id=kept.delivery_id)
            except Exception as exc:  # the store away: the next round tries again
                self._log.warning("call_ended_webhook_resume_failed", error=type(exc).__name__)
            await asyncio.sleep(self._resume_every)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def aclose(self, grace: float = 5.0) -> None:
        """Give what is queued ``grace`` seconds, then stop (what is left is counted as dropped)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        left = self._queue.qsize()
        if left and self._outbox is not None:
            self._log.info("call_ended_webhook_kept", count=left, reason="shutting down: delivered after a restart")
        elif left:
            self._outcome("dropped", left)
            self._log.error("call_ended_webhook_dropped", count=left, reason="shutting down")
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        while True:
            delivery, call_sid, payload = await self._queue.get()
            try:
                await self._deliver(delivery, call_sid, payload)
            except asyncio.CancelledError:
                if self._outbox is None:
                    self._outcome("dropped")  # shutting down mid-delivery
                    CallLog(call_sid).error("call_ended_webhook_dropped", reason="shutting down")
                raise
            except Exception as exc:  # a bug here must not stop later deliveries
                CallLog(call_sid).error("call_ended_webhook_failed", error=f"{type(exc).__name__}: {exc}")
                self._outcome("failed")
            finally:
                self._in_flight.discard(delivery)
                self._queue.task_done()

    async def _deliver(self, delivery: str, call_sid: str, payload: dict[str, Any]) -> None:
        assert self._client is not None
        log = CallLog(call_sid)
        body = json.dumps(
            {"event": EVENT, "delivery_id": delivery, "sent_at": round(time.time(), 3), **payload},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery,
            "User-Agent": "voiceagent-call-ended-webhook",
        }
        delay = self._first_delay
        problem = ""
        refused = False
        for attempt in range(1, self._attempts + 1):
            retry_after: float | None = None
            headers[SIGNATURE_HEADER] = sign(self._secret, body, int(time.time()))  # fresh on every attempt
            try:
                async with asyncio.timeout(self._timeout):  # the whole attempt, not each read
                    response = await self._client.post(self.url, content=body, headers=headers, timeout=self._timeout)
            except TimeoutError:
                problem = "timeout"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    self._outcome("delivered")
                    if self._outbox is not None:
                        self._outbox.done(delivery)
                    log.info(
                        "call_ended_webhook_delivered", host=self._host, status=response.status_code, attempts=attempt
                    )
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRIED_STATUSES and response.status_code < 500:
                    self._failed_attempt()
                    refused = True
                    if self._outbox is not None:
                        self._outbox.done(delivery)  # refused for good: keeping it would not change that
                    break  # the receiver refuses this delivery: asking again will not change its mind
                retry_after = _retry_after(response.headers.get("retry-after"))
            self._failed_attempt()
            if attempt == self._attempts:
                break
            wait = retry_after if retry_after is not None else delay * random.uniform(0.8, 1.2)
            log.warning("call_ended_webhook_retry", host=self._host, problem=problem, attempt=attempt)
            await asyncio.sleep(min(wait, self._max_delay))
            delay = min(delay * 2, self._max_delay)
        self._outcome("failed")
        kept = self._outbox is not None and not refused  # delivered again later (``_resume``)
        log.error("call_ended_webhook_failed", host=self._host, problem=problem, attempts=attempt, kept=kept)

    def _outcome(self, outcome: str, count: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(outcome=outcome).inc(count)

    def _failed_attempt(self) -> None:
        if self._metrics is not None:
            self._metrics.webhook_attempts_failed.inc()


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(int(value.strip()))
