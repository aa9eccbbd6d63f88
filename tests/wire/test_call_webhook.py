"""The call-ended webhook: after a real call, a receiver on loopback gets the call's record and
transcript, signed (HMAC-SHA256 over the raw body), retried after a failure with the same delivery id;
and a receiver that is slow, down or refusing never holds a call up."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import GREETING, WAIT, call_stack, heard_in_full, samples
from voiceagent.call_webhook import SIGNATURE_HEADER, CallEndedWebhook, sign, verify_signature
from voiceagent.metrics import Metrics
from voiceagent.testing import FIXTURE_TEXTS, base_url_of, loopback_socket, serve_asgi, wait_until

SECRET = "webhook-secret-0123456789abcdef"


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answers, in order; then 200
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receiver(*statuses: int) -> AsyncIterator[Receiver]:
    """An HTTP endpoint on 127.0.0.1 that keeps every request and answers ``statuses`` then 200."""
    sock = loopback_socket()
    state = Receiver(f"{base_url_of(sock)}/hooks/call-ended", list(statuses))

    async def hook(request: Request) -> Response:
        state.received.append((await request.body(), dict(request.headers)))
        return Response(status_code=state.statuses.pop(0) if state.statuses else 200)

    app = Starlette(routes=[Route("/hooks/call-ended", hook, methods=["POST"])])
    async with serve_asgi(app, config=uvicorn.Config(app, log_config=None, lifespan="off"), sock=sock):
        yield state


def signature_is_valid(body: bytes, header: str) -> bool:
    """What a receiver computes, written out independently of voiceagent.call_webhook."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= 300


async def test_after_a_call_the_receiver_gets_its_record_and_transcript_signed_and_retried(tmp_path: Path) -> None:
    async with receiver(503) as hooks:
        env = {
            "VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
            "VOICEAGENT_CALL_ENDED_WEBHOOK": hooks.url,
            "VOICEAGENT_WEBHOOK_SECRET": SECRET,
        }
        async with call_stack(env=env) as stack:
            async with stack.caller() as caller:
                assert await caller.dial(), caller.refusal
                await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
                await caller.hangup()
            await wait_until(lambda: len(hooks.received) == 2, WAIT)  # 503, then (after ~1 s) delivered
            # the receiver holds the request before the sender has read the answer and counted it
            exposition = stack.app.service.recorder.metrics.exposition
            delivered = 'voiceagent_call_ended_webhook_deliveries_total{outcome="delivered"} 1.0'
            await wait_until(lambda: delivered in exposition().decode(), WAIT)
            metrics = exposition().decode()
    assert "voiceagent_call_ended_webhook_failed_attempts_total 1.0" in metrics

    (first, first_headers), (body, headers) = hooks.received
    assert first == body  # the same delivery, again
    assert headers["x-voiceagent-delivery"] == first_headers["x-voiceagent-delivery"]
    assert headers["content-type"] == "application/json"
    signature = headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("t=") and signature_is_valid(body, signature)
    assert verify_signature(SECRET, body, signature)
    assert not verify_signature(SECRET, body + b" ", signature)
    assert not verify_signature("another-secret-0123456789", body, signature)

    payload = json.loads(body)
    assert payload["event"] == "call.ended" and payload["delivery_id"] == headers["x-voiceagent-delivery"]
    call = payload["call"]
    assert call["call_sid"] == caller.call_sid and call["end_reason"] == "caller hung up"
    assert call["from_number"] == "+1555***4567" and call["in_progress"] is False
    assert call["model"] == "gpt-realtime" and call["summary"]["reason"] == "caller hung up"
    assert [(line["role"], line["text"]) for line in payload["transcript"]] == [
        ("agent", FIXTURE_TEXTS["agent_greeting"])
    ]


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def outcomes(metrics: Metrics) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in samples(metrics.webhook_deliveries) if s.name.endswith("_total")}


async def test_server_errors_are_retried_with_back_off_and_a_refusal_is_final() -> None:
    attempts: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sid = json.loads(request.content)["call"]["call_sid"]
        attempts[sid] = attempts.get(sid, 0) + 1
        if sid == "CAdown":
            return httpx.Response(500)
        if sid == "CAbusy" and attempts[sid] == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if sid == "CAgone":
            return httpx.Response(410)
        if sid == "CAslowconnect":
            raise httpx.ConnectError("refused")
        return httpx.Response(204)

    metrics = Metrics()
    client = mock_client(handler)
    webhook = CallEndedWebhook(
        "https://hooks.example.com/x", SECRET, metrics=metrics, client=client, attempts=3, first_delay=0.01
    )
    webhook.start()
    for sid in ("CAok", "CAdown", "CAbusy", "CAgone", "CAslowconnect"):
        assert webhook.submit(sid, {"call": {"call_sid": sid}, "transcript": []})
    await wait_until(lambda: sum(outcomes(metrics).values()) == 5, WAIT)
    await webhook.aclose()
    await client.aclose()
    assert attempts == {"CAok": 1, "CAdown": 3, "CAbusy": 2, "CAgone": 1, "CAslowconnect": 3}
    assert outcomes(metrics) == {"delivered": 2, "failed": 3}


async def test_a_receiver_that_hangs_never_holds_a_call_up_and_the_queue_is_bounded() -> None:
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200)

    metrics = Metrics()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    webhook = CallEndedWebhook(
        "https://hooks.example.com/x", SECRET, metrics=metrics, client=client, max_pending=3, workers=1
    )
    webhook.start()
    assert webhook.submit("CA0", {"call": {}, "transcript": []})
    await wait_until(lambda: webhook.pending == 0, WAIT)  # with the (hung) receiver
    started = time.perf_counter()
    accepted = [webhook.submit(f"CA{n}", {"call": {}, "transcript": []}) for n in range(1, 6)]
    assert time.perf_counter() - started < 0.05  # submitting is queueing, nothing else
    # three wait; the other two were dropped and counted
    assert accepted == [True, True, True, False, False] and outcomes(metrics) == {"dropped": 2}
    started = time.perf_counter()
    await webhook.aclose(grace=0.1)  # shutting down does not wait for the receiver either
    assert time.perf_counter() - started < 2
    assert outcomes(metrics) == {"dropped": 2 + 3 + 1}  # and what it gave up is counted
    release.set()
    await client.aclose()


def test_a_signature_covers_its_timestamp_so_a_replay_later_is_refused() -> None:
    body = b'{"event":"call.ended"}'
    signed_at = 1_800_000_000
    header = sign(SECRET, body, signed_at)
    assert verify_signature(SECRET, body, header, now=signed_at + 299)
    assert not verify_signature(SECRET, body, header, now=signed_at + 301)  # replayed six minutes later
    assert not verify_signature(SECRET, body, header, now=signed_at - 301)
    moved = header.replace(f"t={signed_at}", f"t={signed_at + 400}")  # a fresh timestamp on an old signature
    assert not verify_signature(SECRET, body, moved, now=signed_at + 400)
    for broken in ("", "v1=abc", "t=abc,v1=abc", f"sha256={header.split('v1=')[1]}"):
        assert not verify_signature(SECRET, body, broken, now=signed_at)


async def test_a_receiver_dripping_its_answer_cannot_hold_a_worker_past_the_timeout() -> None:
    """Each attempt has one deadline as a whole: a byte every 0.3 s never trips a per-read timeout."""
    drips: list[int] = []

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                drips.append(1)
                await asyncio.sleep(0.3)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = Metrics()
    webhook = CallEndedWebhook(
        f"http://127.0.0.1:{port}/x", SECRET, metrics=metrics, attempts=2, first_delay=0.01, timeout=1.0, workers=1
    )
    webhook.start()
    started = time.perf_counter()
    assert webhook.submit("CAdrip", {"call": {}, "transcript": []})
    await wait_until(lambda: outcomes(metrics) == {"failed": 1}, WAIT)
    elapsed = time.perf_counter() - started
    await webhook.aclose()
    server.close()
    await server.wait_closed()
    assert drips, "the receiver never started answering"
    assert elapsed < 30  # two attempts of about a second each; without the deadline, 1000 drips of 0.3 s
