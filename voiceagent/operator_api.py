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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from voiceagent.logs import CallLog
from voiceagent.metrics import CONTENT_TYPE_LATEST
from voiceagent.operator_actions import action, control_answerer, sid_in_path
from voiceagent.operator_auth import Handler, api_token, check_token, error, protected, service_of
from voiceagent.service import Service
from voiceagent.store.records import CallRecord, LineRecord, call_as_text, kind_filter, number_filter, parse_time

__all__ = ["announce", "metrics_routes", "operator_routes"]

KEEPALIVE_SECONDS = 15.0
DEFAULT_LIMIT = 50
LINE_ANSWER_SECONDS = 1.5  # /api/calls/live waits this long for the other instances' calls


def announce(service: Service) -> None:
    """Say at start-up whether the operator API is on (the token itself is never logged)."""
    log = CallLog()
    if api_token(service) is None:
        log.warning("operator_api_off", detail="VOICEAGENT_API_TOKEN is not set: /api/* answers 404")
    elif service.recorder.store is None:
        log.warning("operator_api_off", detail="no call records: /api/* answers 404")
    else:
        log.info("operator_api_on", routes="/api/*", auth="bearer")
    if service.records is not None and service.records.metrics == "open":
        log.info("metrics_open", detail="GET /metrics needs no token (VOICEAGENT_METRICS=open)")
    elif api_token(service) is None:
        closed = "GET /metrics answers 404: set VOICEAGENT_API_TOKEN, or VOICEAGENT_METRICS=open"
        log.info("metrics_closed", detail=closed)


# ------------------------------------------------------------ queries


async def list_calls(request: Request) -> Response:
    service = service_of(request)
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
        return error(400, str(exc))
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
    service = service_of(request)
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


async def _call_in_path(request: Request) -> tuple[CallRecord, list[LineRecord]] | None:
    """The call the path names and its transcript; None if the sid is malformed or no such call is known."""
    sid = sid_in_path(request)
    return None if sid is None else await _record_and_lines(service_of(request), sid)


async def get_call(request: Request) -> Response:
    found = await _call_in_path(request)
    if found is None:
        return error(404, "no such call")
    record, lines = found
    return JSONResponse({"call": record.to_json(), "transcript": [line.to_json() for line in lines]})


async def transcript_text(request: Request) -> Response:
    found = await _call_in_path(request)
    if found is None:
        return error(404, "no such call")
    record, lines = found
    return PlainTextResponse(call_as_text(record, lines))


async def recording(request: Request) -> Response:
    service = service_of(request)
    sid = sid_in_path(request)
    records = service.records
    if sid is None or records is None or not records.recordings:
        return error(404, "no recording (recordings are off)" if sid is not None else "no such call")
    path = Path(records.recordings_dir) / f"{sid}.wav"
    if not path.is_file():
        return error(404, "no recording of this call")
    cut_short = {"X-Recording-Incomplete": "true"} if service_of(request).recorder.recording_incomplete(sid) else None
    return FileResponse(path, media_type="audio/wav", filename=f"{sid}.wav", headers=cut_short)


async def events(request: Request) -> Response:
    hub = service_of(request).recorder.events
    if hub.full:
        return error(
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


def answer_for_line(service: Service) -> None:
    """What this instance answers the others: a call action on a call it has, and its live calls."""

    async def live(body: dict[str, Any]) -> dict[str, Any]:
        return {"calls": _live_here(service)}

    service.line.answer("control", control_answerer(service))
    service.line.answer("live", live)


def operator_routes() -> list[BaseRoute]:
    """The ``/api`` routes (``/api/calls/live`` before ``/api/calls/{sid}``)."""
    routes: list[tuple[str, Handler, str]] = [
        ("/api/calls", list_calls, "GET"),
        ("/api/calls/live", live_calls, "GET"),
        ("/api/events", events, "GET"),
        ("/api/calls/{sid}", get_call, "GET"),
        ("/api/calls/{sid}/transcript.txt", transcript_text, "GET"),
        ("/api/calls/{sid}/recording.wav", recording, "GET"),
        ("/api/calls/{sid}/say", action("say"), "POST"),
        ("/api/calls/{sid}/note", action("note"), "POST"),
        ("/api/calls/{sid}/hangup", action("hangup"), "POST"),
        ("/api/calls/{sid}/transfer", action("transfer"), "POST"),
    ]
    return [Route(path, protected(handler), methods=[method]) for path, handler, method in routes]


# ------------------------------------------------------------ metrics


async def metrics(request: Request) -> Response:
    """Prometheus exposition: with the bearer token, or to anyone with ``VOICEAGENT_METRICS=open``; closed
    (404) when neither is configured, since the port also serves Twilio and so is public."""
    service = service_of(request)
    if service.records is None or service.records.metrics != "open":
        token = api_token(service)
        if token is None:
            return error(404, "/metrics is closed: set VOICEAGENT_API_TOKEN (and send it), or VOICEAGENT_METRICS=open")
        refused = check_token(request, token)
        if refused is not None:
            return refused
    return Response(service.recorder.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def metrics_routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics, methods=["GET"])]
