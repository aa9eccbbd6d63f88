"""The starlette app: routes only. Decisions live in ``admission``, ``service``, ``bridge`` and ``call``;
Twilio's HTTP requests about a call are answered in ``webhooks``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any, assert_never

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voiceagent.admission import (
    Busy,
    EndedEarly,
    Rejected,
    StreamAccepted,
)
from voiceagent.call import CallOptions, EndCall, EndReason, Farewell
from voiceagent.config import Settings
from voiceagent.console import console_routes
from voiceagent.line.lost import RestDoor
from voiceagent.line.resume import RESUME_PARAMETER, resumed_options
from voiceagent.logs import CallLog
from voiceagent.operator_api import announce, answer_for_line, metrics_routes, operator_routes
from voiceagent.service import Clock, ModelConnector, Service
from voiceagent.store.records import LineRecord
from voiceagent.store.settings import RecordsSettings
from voiceagent.tools import ToolBox
from voiceagent.transcripts import TranscriptSink
from voiceagent.twilio import twiml
from voiceagent.twilio.eval_mark import STREAM_PARAMETER
from voiceagent.twilio.media_stream import MediaStreamAdapter
from voiceagent.twilio.rest import call_updater
from voiceagent.twilio.security import TOKEN_PARAMETER
from voiceagent.twilio.transport import TwilioTransport, wait_for_start
from voiceagent.twilio.webhook_guard import WebhookGuard
from voiceagent.webhooks import dial_ended, public_base, signed_stream_urls, stream_ended, stream_status, voice

START_TIMEOUT_SECONDS = 10.0


async def media(websocket: WebSocket) -> None:
    """The Twilio Media Stream. Every check passes before any model connection is opened."""
    service: Service = websocket.app.state.service
    log = CallLog()
    base = public_base(websocket)
    if base is None:
        await websocket.close(code=1008)
        return
    signature = websocket.headers.get("x-twilio-signature")
    urls = signed_stream_urls(service, base, websocket.path_params.get("instance"))  # any instance's address
    if not any(service.signatures.valid(url, {}, signature) for url in urls):
        log.warning("stream_rejected", reason="bad or missing X-Twilio-Signature on the upgrade")
        await websocket.close(code=1008)
        return
    await websocket.accept()
    try:
        start = await asyncio.wait_for(wait_for_start(websocket, log), START_TIMEOUT_SECONDS)
    except TimeoutError:
        start = None
    if start is None:
        log.warning("stream_rejected", reason="no valid start message")
        await _close(websocket, 1008)
        return
    log = CallLog(start.call_sid)
    token = start.parameters.get(TOKEN_PARAMETER)
    verdict = service.admission.stream(start.call_sid, token, service.status_of(start.call_sid), service.load())
    if isinstance(verdict, StreamAccepted | EndedEarly) and not await service.line_calls.first_token(
        token or "", service.tokens.ttl
    ):
        verdict = Rejected("stream token already used")  # on another instance of the line
    match verdict:
        case Rejected(reason=reason):
            log.warning("stream_rejected", reason=reason)
            await _close(websocket, 1008)
            return
        case EndedEarly(reason=reason):
            # refused, or the pre-warm found the model unreachable: end the stream so that Twilio asks
            # /twilio/stream-ended, which says why to the caller
            log.warning("stream_ended_early", reason=reason)
            await _close(websocket, 1000)
            return
        case Busy(reason=reason, calls=calls):
            log.warning("call_refused", reason=reason, calls=calls, at="stream")
            service.remember_end(start.call_sid, EndCall(EndReason.REFUSED, reason, Farewell.BUSY))
            await _close(websocket, 1000)
            return
        case StreamAccepted():
            pass
        case _:
            assert_never(verdict)
    options: CallOptions | None = None
    earlier: list[LineRecord] = []
    if start.parameters.get(RESUME_PARAMETER) == "1" and start.call_sid not in service.calls:
        options, earlier = await resumed_options(
            service.call_options(), service.recorder.store, start.call_sid, service.settings.resume_line
        )
        log.info("call_resumed", earlier_lines=len(earlier))
    bridge = service.claim(
        start.call_sid,
        stream_sid=start.stream_sid,
        caller=start.parameters.get("from"),
        called=start.parameters.get("to"),
        options=options,
        earlier=earlier,
        kind=service.eval_marks.kind(start.call_sid, start.parameters, STREAM_PARAMETER),
    )
    await service.line_calls.claimed(start.call_sid)  # one row written; the release goes on without us
    await bridge.run_stream(service.transport_for(bridge, TwilioTransport(websocket, MediaStreamAdapter(start))))


async def _close(websocket: WebSocket, code: int) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """For load balancers: 503 while draining. How many calls are in progress is nobody else's business."""
    service: Service = request.app.state.service
    if service.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ready"})


class _FromEnvironment(Enum):
    RECORDS = "from the environment"


FROM_ENVIRONMENT = _FromEnvironment.RECORDS
"""``create_app(records=...)``'s default: ``settings.records`` (read with the settings, from their mapping)."""


def create_app(
    settings: Settings,
    *,
    credential: Any = None,
    sink: TranscriptSink | None = None,
    connector: ModelConnector | None = None,
    clock: Clock | None = None,
    tools: ToolBox | None = None,
    records: RecordsSettings | None | _FromEnvironment = FROM_ENVIRONMENT,
) -> Starlette:
    """Build the ASGI app. ``credential``: an ``azure.identity.aio`` credential for Entra ID (made here
    when Azure is configured without an API key); ``sink``: where transcripts go (default: the log);
    ``connector`` and ``clock``: the model seam and the time source (tests put fakes there);
    ``records``: call records, the operator API and the call-ended webhook (default: from the
    ``VOICEAGENT_*`` variables the settings were read from; ``None``: no records, no API, metrics only)."""
    if isinstance(records, _FromEnvironment):
        records = settings.records

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = None
        if credential is None and settings.model.provider == "azure" and not settings.model.api_key:
            from azure.identity.aio import DefaultAzureCredential

            owned = app.state.service.credential = DefaultAzureCredential()
        recorder = app.state.service.recorder
        await recorder.start()
        await app.state.service.line.start()  # after the store: its migrations made the line's tables
        announce(app.state.service)
        try:
            yield
        finally:
            await app.state.service.close()
            await app.state.service.line.stop()
            await recorder.stop()  # after the calls: their ends are recorded
            if owned is not None:
                await owned.close()

    app = Starlette(
        routes=[
            Route("/twilio/voice", voice, methods=["POST"]),
            Route(twiml.STREAM_ENDED_PATH, stream_ended, methods=["POST"]),
            Route(twiml.DIAL_ENDED_PATH, dial_ended, methods=["POST"]),
            Route(twiml.STREAM_STATUS_PATH, stream_status, methods=["POST"]),
            WebSocketRoute(twiml.MEDIA_PATH, media),
            WebSocketRoute(twiml.INSTANCE_PREFIX + twiml.MEDIA_PATH, media),  # served here, whoever it names
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *metrics_routes(),
            *operator_routes(),
            *console_routes(),
        ],
        # the console's sign-in form gets the same bounds as Twilio's (size, content type, time)
        middleware=[Middleware(WebhookGuard), Middleware(WebhookGuard, prefix="/console/session")],
        lifespan=lifespan,
    )
    service = Service(settings, credential=credential, connector=connector, clock=clock, tools=tools, records=records)
    if sink is not None:
        service.sink = sink
    answer_for_line(service)  # control and live views asked by the other instances
    app.state.service = service
    rest = settings.twilio_account_sid and settings.twilio_auth_token
    updater = call_updater(settings.twilio_account_sid or "", settings.twilio_auth_token or "", settings.twilio_api_url)
    app.state.rest_door = RestDoor(service.line_calls, updater if rest else None)
    return app
