"""The operator's view of the line: call records, live calls and events, and stepping into a call.

Every route wants ``Authorization: Bearer $VOICEAGENT_API_TOKEN`` (compared in constant time; the token
is never logged). Without ``VOICEAGENT_API_TOKEN`` the API is off: every route answers 404, and start-up
says so. Errors are JSON: ``{"error": "…"}``.

    GET  /api/calls?from=&to=&number=&reason=&kind=&limit=&cursor=   newest first; next page: ?cursor=<next_cursor>;
                                                               kind=live (default) | eval | all
    GET  /api/calls/live                                       calls in progress on the line, each with its instance
    GET  /api/calls/{sid}                                      the call's record and transcript
    GET  /api/calls/{sid}/transcript.txt
    GET  /api/calls/{sid}/recording.wav                        with VOICEAGENT_RECORDINGS=on
    GET  /api/events                                           server-sent events: call_started, call_answered,
                                                               utterance, barge_in, tool, call_ended
    POST /api/calls/{sid}/say       {"text": "…"}              the agent says it (after what it is saying)
    POST /api/calls/{sid}/note      {"text": "…"}              context for the model, not spoken
    POST /api/calls/{sid}/hangup
    POST /api/calls/{sid}/transfer  {"to": "+15551230001" | "sip:…"}

A call action on a call another instance of the line has (PostgreSQL records: ``voiceagent.line``) is
passed to that instance over the bus and answered with its answer (504 if it does not answer in time).
A call no instance has in progress answers 409 if it is known (the store has it, or it ended here) and
404 otherwise.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from voiceagent.call import Accepted, Action, EndReason, OperatorAnswer, Refused
from voiceagent.config import Settings
from voiceagent.logs import CallLog
from voiceagent.metrics import CONTENT_TYPE_LATEST
from voiceagent.service import CallBridge, Service
from voiceagent.store import StoreError
from voiceagent.store.records import CallRecord, LineRecord, call_as_text, kind_filter, number_filter, parse_time
from voiceagent.text import valid_text

__all__ = ["announce", "metrics_routes", "operator_routes"]

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}", re.ASCII)
# as VOICEAGENT_TRANSFER_TO: a number, or a sip: URI of printable ASCII (URI parameters allowed), no comma
DESTINATION = re.compile(r"\+[1-9][0-9]{6,14}|sip:[\x21-\x2b\x2d-\x7e]{1,250}", re.ASCII)
MAX_BODY_BYTES = 16 * 1024
MAX_TEXT_CHARS = 2000
KEEPALIVE_SECONDS = 15.0
DEFAULT_LIMIT = 50
LINE_ANSWER_SECONDS = 1.5  # /api/calls/live waits this long for the other instances' calls
ACTIONS = ("say", "note", "hangup", "transfer")

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _api_token(service: Service) -> str | None:
    records = service.records
    return records.api_token if records is not None else None


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest on bytes: constant time whatever the input (str needs ASCII)
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _unauthorized() -> JSONResponse:
    return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="voiceagent"'})


def _check_token(request: Request, token: str) -> Response | None:
    """None when the request carries ``token``; otherwise the answer (401, or 429 for a client that has
    guessed wrong too often: see ``voiceagent.api_auth``)."""
    failures = _service(request).failed_logins
    client = request.client.host if request.client is not None else "?"
    if failures.blocked(client):
        return _error(429, "too many wrong tokens from this address; wait a minute", **{"Retry-After": "60"})
    if _bearer_ok(request, token):
        return None
    failures.failed(client, request.url.path)
    return _unauthorized()


def _protected(handler: Handler) -> Handler:
    """The token check in front of every operator route."""

    async def checked(request: Request) -> Response:
        service = _service(request)
        token = _api_token(service)
        if token is None or service.recorder.store is None:
            return _error(404, "the operator API is off: set VOICEAGENT_API_TOKEN (and keep call records on)")
        refused = _check_token(request, token)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except StoreError as exc:  # a database that is away or hangs: say so, never a traceback
            CallLog().warning("operator_api_store_unavailable", path=request.url.path, error=str(exc))
            return _error(503, f"the call records cannot be read right now: {exc}", **{"Retry-After": "5"})

    return checked


def announce(service: Service) -> None:
    """Say at start-up whether the operator API is on (the token itself is never logged)."""
    log = CallLog()
    if _api_token(service) is None:
        log.warning("operator_api_off", detail="VOICEAGENT_API_TOKEN is not set: /api/* answers 404")
    elif service.recorder.store is None:
        log.warning("operator_api_off", detail="no call records: /api/* answers 404")
    else:
        log.info("operator_api_on", routes="/api/*", auth="bearer")
    if service.records is not None and service.records.metrics == "open":
        log.info("metrics_open", detail="GET /metrics needs no token (VOICEAGENT_METRICS=open)")
    elif _api_token(service) is None:
        closed = "GET /metrics answers 404: set VOICEAGENT_API_TOKEN, or VOICEAGENT_METRICS=open"
        log.info("metrics_closed", detail=closed)


# ------------------------------------------------------------ queries


async def list_calls(request: Request) -> Response:
    service = _service(request)
    store = service.recorder.store
    assert store is not None
    query = request.query_params
    try:
        since, until = parse_time("from", query.get("from")), parse_time("to", query.get("to"))
        limit_text = (query.get("limit") or str(DEFAULT_LIMIT)).strip()
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 500:
            raise ValueError(f"limit must be a whole number from 1 to 500, not {limit_text[:20]!r}")
        limit = int(limit_text)
        numbers = number_filter(query.get("number"), full=service.settings.log_full_numbers)
        page = await store.read(
            functools.partial(
                store.list_calls,
                since=since,
                until=until,
                numbers=numbers,
                reason=(query.get("reason") or "").strip()[:200] or None,
                kind=kind_filter(query.get("kind")),  # eval calls only when asked
                limit=limit,
                cursor=query.get("cursor") or None,
            )
        )
    except ValueError as exc:
        return _error(400, str(exc))
    return JSONResponse({"calls": [call.to_json() for call in page.calls], "next_cursor": page.next_cursor})


def _live_here(service: Service) -> list[dict[str, Any]]:
    calls = []
    for handle in list(service.recorder.live.values()):
        bridge = service.calls.get(handle.call_sid)
        phase = bridge.core.phase.name.lower() if bridge is not None else "ending"
        calls.append({**handle.live_json(), "phase": phase, "instance": service.line.instance})
    return calls


async def live_calls(request: Request) -> Response:
    """The calls of the whole line: this instance's, and those of every other that answers in time."""
    service = _service(request)
    calls = _live_here(service)
    if service.line.shared:
        answers = await service.line.ask_everyone("live", {}, timeout=LINE_ANSWER_SECONDS)
        for answer in answers.values():
            calls += [call for call in answer.get("calls", []) if isinstance(call, dict)]
    return JSONResponse({"calls": calls})


async def _record_and_lines(service: Service, call_sid: str) -> tuple[CallRecord, list[LineRecord]] | None:
    handle = service.recorder.live.get(call_sid)
    if handle is not None:  # in progress here: memory is ahead of the store
        return handle.record, list(handle.lines)
    store = service.recorder.store
    assert store is not None
    record = await store.read(store.get_call, call_sid)
    if record is None:
        return None
    return record, await store.read(store.transcript, call_sid)


def _sid(request: Request) -> str | None:
    sid = str(request.path_params["sid"])
    return sid if CALL_SID.fullmatch(sid) else None


async def _call_in_path(request: Request) -> tuple[CallRecord, list[LineRecord]] | None:
    """The call the path names and its transcript; None if the sid is malformed or no such call is known."""
    sid = _sid(request)
    return None if sid is None else await _record_and_lines(_service(request), sid)


async def get_call(request: Request) -> Response:
    found = await _call_in_path(request)
    if found is None:
        return _error(404, "no such call")
    record, lines = found
    return JSONResponse({"call": record.to_json(), "transcript": [line.to_json() for line in lines]})


async def transcript_text(request: Request) -> Response:
    found = await _call_in_path(request)
    if found is None:
        return _error(404, "no such call")
    record, lines = found
    return PlainTextResponse(call_as_text(record, lines))


async def recording(request: Request) -> Response:
    service = _service(request)
    sid = _sid(request)
    records = service.records
    if sid is None or records is None or not records.recordings:
        return _error(404, "no recording (recordings are off)" if sid is not None else "no such call")
    path = Path(records.recordings_dir) / f"{sid}.wav"
    if not path.is_file():
        return _error(404, "no recording of this call")
    cut_short = {"X-Recording-Incomplete": "true"} if _service(request).recorder.recording_incomplete(sid) else None
    return FileResponse(path, media_type="audio/wav", filename=f"{sid}.wav", headers=cut_short)


async def events(request: Request) -> Response:
    hub = _service(request).recorder.events
    if hub.full:
        return _error(
            503, f"{hub.max_subscribers} event streams are open already; try again later", **{"Retry-After": "30"}
        )

    async def stream() -> AsyncIterator[str]:
        subscription = hub.subscribe()  # here, so that the finally below always runs for it
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    event = await subscription.next(KEEPALIVE_SECONDS)
                except EOFError:
                    if subscription.dropped:
                        yield 'event: dropped\ndata: {"reason":"this subscriber fell behind"}\n\n'
                    return
                yield ": keep-alive\n\n" if event is None else event.sse()
        finally:
            hub.unsubscribe(subscription)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


# ------------------------------------------------------------ stepping in


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ValueError("body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ValueError("body too large")
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    except RecursionError:  # thousands of nested '[': no request of ours needs any nesting
        raise ValueError("the body is nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError("the body must be a JSON object")
    return parsed


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{name}" must be a non-empty string')
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f'"{name}" must be at most {MAX_TEXT_CHARS} characters')
    return valid_text(value.strip())  # a lone surrogate could be accepted here but never sent on


async def _live_bridge(service: Service, sid: str) -> CallBridge | Response:
    bridge = service.calls.get(sid)
    if bridge is not None and bridge.ended is None:
        return bridge
    store = service.recorder.store
    known = service.end_of(sid) is not None
    if not known and store is not None:
        known = await store.read(store.get_call, sid) is not None
    if known:
        return _error(409, f"call {sid} is not in progress on this instance (it ended, or another instance has it)")
    return _error(404, "no such call")


def _operate(bridge: CallBridge, act: Callable[[float], tuple[OperatorAnswer, list[Action]]]) -> OperatorAnswer:
    """Run one of the core's operator inputs through the bridge; return its answer."""
    answers: list[OperatorAnswer] = []

    def run(now: float) -> list[Action]:
        answer, actions = act(now)
        answers.append(answer)
        return actions

    bridge.operator(run)
    return answers[0]


def _hang_up(bridge: CallBridge, now: float) -> tuple[OperatorAnswer, list[Action]]:
    return Accepted(), bridge.core.end(EndReason.OPERATOR_HUNG_UP, "an operator hung up", now)


def _refusal(bridge: CallBridge, answer: OperatorAnswer) -> Response | None:
    if isinstance(answer, Refused):
        phase = bridge.core.phase.name.lower()
        return _error(
            409, f"the call cannot take that now (phase: {phase}, model: {bridge.core.model_phase.name.lower()})"
        )
    return None


def _may_transfer_to(settings: Settings, destination: str) -> bool:
    """Only where the operator said calls may go: a leaked token must not dial premium or foreign numbers
    with this line's caller ID (toll fraud)."""
    if destination in settings.transfer_to.values():
        return True
    return any(destination.startswith(prefix) for prefix in settings.transfer_allow if prefix)


def _action(kind: str) -> Handler:
    async def handle(request: Request) -> Response:
        service, sid = _service(request), _sid(request)
        if sid is not None and service.line.shared and sid not in service.calls:
            owner = await service.line.state.owner_of(sid)
            if owner is not None and owner != service.line.instance:
                return await _forward(service, owner, sid, kind, request)
        return await _act(request, kind, lambda: _json_body(request))

    return handle


async def _forward(service: Service, owner: str, sid: str, kind: str, request: Request) -> Response:
    """The call is on another instance: ask it to act, answer with what it answered."""
    try:
        body = await _json_body(request) if kind != "hangup" else {}
    except ValueError as exc:
        return _error(400, str(exc))
    answer = await service.line.request(owner, "control", {"call_sid": sid, "kind": kind, "body": body})
    if answer is None:
        return _error(504, f"instance {owner}, which has call {sid}, did not answer in time", **{"Retry-After": "2"})
    found = answer.get("body")
    return JSONResponse(found if isinstance(found, dict) else {}, status_code=int(answer.get("status", 502)))


def answer_for_line(service: Service) -> None:
    """What this instance answers the others: a call action on a call it has, and its live calls."""

    async def control(body: dict[str, Any]) -> dict[str, Any]:
        sid, kind, given = str(body.get("call_sid")), str(body.get("kind")), body.get("body")
        if kind not in ACTIONS or not CALL_SID.fullmatch(sid):
            return {"status": 400, "body": {"error": "not a call action"}}

        async def read_body() -> dict[str, Any]:
            return given if isinstance(given, dict) else {}

        response = await _act_on(service, sid, kind, read_body)
        return {"status": response.status_code, "body": json.loads(bytes(response.body))}

    async def live(body: dict[str, Any]) -> dict[str, Any]:
        return {"calls": _live_here(service)}

    service.line.answer("control", control)
    service.line.answer("live", live)


async def _act(request: Request, kind: str, read_body: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    sid = _sid(request)
    if sid is None:
        return _error(404, "no such call")
    return await _act_on(_service(request), sid, kind, read_body)


async def _act_on(
    service: Service, sid: str, kind: str, read_body: Callable[[], Awaitable[dict[str, Any]]]
) -> Response:
    """One call action on a call this instance has in progress (202, 400, 404 or 409)."""
    found = await _live_bridge(service, sid)
    if isinstance(found, Response):
        return found
    bridge = found
    try:
        body = await read_body() if kind != "hangup" else {}
        if kind in ("say", "note") and not service.operator_lines.allow(f"{kind}:{bridge.call_sid}", time.monotonic()):
            limit = service.operator_lines.limit
            return _error(429, f"at most {limit} {kind}s a minute per call; wait", **{"Retry-After": "60"})
        if kind == "say":
            text = _text_field(body, "text")
            decided = _operate(bridge, lambda now: bridge.core.operator_say(text, now))
        elif kind == "note":
            text = _text_field(body, "text")
            decided = _operate(bridge, lambda now: bridge.core.operator_note(text, now))
        elif kind == "transfer":
            to = _text_field(body, "to")
            if not DESTINATION.fullmatch(to):
                raise ValueError('"to" must be an E.164 number (+15551230001) or a sip: URI')
            if not _may_transfer_to(service.settings, to):
                return _error(
                    403,
                    f"{to} is not a transfer destination of this line: use one of VOICEAGENT_TRANSFER_TO, "
                    "or a prefix in VOICEAGENT_TRANSFER_ALLOW",
                )
            decided = _operate(bridge, lambda now: bridge.core.operator_transfer(to, now))
        else:
            decided = _operate(bridge, lambda now: _hang_up(bridge, now))
    except ValueError as exc:
        return _error(400, str(exc))
    refused = _refusal(bridge, decided)
    if refused is not None:
        return refused
    return JSONResponse({"status": "accepted", "call_sid": bridge.call_sid, "action": kind}, status_code=202)


def operator_routes() -> list[BaseRoute]:
    """The ``/api`` routes (``/api/calls/live`` before ``/api/calls/{sid}``)."""
    routes: list[tuple[str, Handler, str]] = [
        ("/api/calls", list_calls, "GET"),
        ("/api/calls/live", live_calls, "GET"),
        ("/api/events", events, "GET"),
        ("/api/calls/{sid}", get_call, "GET"),
        ("/api/calls/{sid}/transcript.txt", transcript_text, "GET"),
        ("/api/calls/{sid}/recording.wav", recording, "GET"),
        ("/api/calls/{sid}/say", _action("say"), "POST"),
        ("/api/calls/{sid}/note", _action("note"), "POST"),
        ("/api/calls/{sid}/hangup", _action("hangup"), "POST"),
        ("/api/calls/{sid}/transfer", _action("transfer"), "POST"),
    ]
    return [Route(path, _protected(handler), methods=[method]) for path, handler, method in routes]


# ------------------------------------------------------------ metrics


async def metrics(request: Request) -> Response:
    """Prometheus exposition: with the bearer token, or to anyone with ``VOICEAGENT_METRICS=open``; closed
    (404) when neither is configured, since the port also serves Twilio and so is public."""
    service = _service(request)
    if service.records is None or service.records.metrics != "open":
        token = _api_token(service)
        if token is None:
            return _error(404, "/metrics is closed: set VOICEAGENT_API_TOKEN (and send it), or VOICEAGENT_METRICS=open")
        refused = _check_token(request, token)
        if refused is not None:
            return refused
    return Response(service.recorder.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def metrics_routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics, methods=["GET"])]
