"""Stepping into a call: ``say``, ``note``, ``hangup`` and ``transfer`` on a call in progress, here or,
on a shared line, on the instance that has it (passed over the bus, answered with its answer)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voiceagent.call import Accepted, Action, EndReason, OperatorAnswer, Refused
from voiceagent.config import Settings
from voiceagent.operator_auth import Handler, error, service_of
from voiceagent.service import CallBridge, Service
from voiceagent.text import valid_text

__all__ = ["ACTIONS", "CALL_SID", "act_on", "action", "control_answerer", "sid_in_path"]

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}", re.ASCII)
# as VOICEAGENT_TRANSFER_TO: a number, or a sip: URI of printable ASCII (URI parameters allowed), no comma
DESTINATION = re.compile(r"\+[1-9][0-9]{6,14}|sip:[\x21-\x2b\x2d-\x7e]{1,250}", re.ASCII)
MAX_BODY_BYTES = 16 * 1024
MAX_TEXT_CHARS = 2000
ACTIONS = ("say", "note", "hangup", "transfer")


def sid_in_path(request: Request) -> str | None:
    sid = str(request.path_params["sid"])
    return sid if CALL_SID.fullmatch(sid) else None


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
        return error(409, f"call {sid} is not in progress on this instance (it ended, or another instance has it)")
    return error(404, "no such call")


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
        return error(
            409, f"the call cannot take that now (phase: {phase}, model: {bridge.core.model_phase.name.lower()})"
        )
    return None


def _may_transfer_to(settings: Settings, destination: str) -> bool:
    """Only where the operator said calls may go: a leaked token must not dial premium or foreign numbers
    with this line's caller ID (toll fraud)."""
    if destination in settings.transfer_to.values():
        return True
    return any(destination.startswith(prefix) for prefix in settings.transfer_allow if prefix)


def action(kind: str) -> Handler:
    async def handle(request: Request) -> Response:
        service, sid = service_of(request), sid_in_path(request)
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
        return error(400, str(exc))
    answer = await service.line.request(owner, "control", {"call_sid": sid, "kind": kind, "body": body})
    if answer is None:
        return error(504, f"instance {owner}, which has call {sid}, did not answer in time", **{"Retry-After": "2"})
    found = answer.get("body")
    return JSONResponse(found if isinstance(found, dict) else {}, status_code=int(answer.get("status", 502)))


async def _act(request: Request, kind: str, read_body: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    sid = sid_in_path(request)
    if sid is None:
        return error(404, "no such call")
    return await act_on(service_of(request), sid, kind, read_body)


async def act_on(service: Service, sid: str, kind: str, read_body: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    """One call action on a call this instance has in progress (202, 400, 404 or 409)."""
    found = await _live_bridge(service, sid)
    if isinstance(found, Response):
        return found
    bridge = found
    try:
        body = await read_body() if kind != "hangup" else {}
        if kind in ("say", "note") and not service.operator_lines.allow(f"{kind}:{bridge.call_sid}", time.monotonic()):
            limit = service.operator_lines.limit
            return error(429, f"at most {limit} {kind}s a minute per call; wait", **{"Retry-After": "60"})
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
                return error(
                    403,
                    f"{to} is not a transfer destination of this line: use one of VOICEAGENT_TRANSFER_TO, "
                    "or a prefix in VOICEAGENT_TRANSFER_ALLOW",
                )
            decided = _operate(bridge, lambda now: bridge.core.operator_transfer(to, now))
        else:
            decided = _operate(bridge, lambda now: _hang_up(bridge, now))
    except ValueError as exc:
        return error(400, str(exc))
    refused = _refusal(bridge, decided)
    if refused is not None:
        return refused
    return JSONResponse({"status": "accepted", "call_sid": bridge.call_sid, "action": kind}, status_code=202)


def control_answerer(service: Service) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """How this instance answers another's ``control`` request: the action on a call it has."""

    async def control(body: dict[str, Any]) -> dict[str, Any]:
        sid, kind, given = str(body.get("call_sid")), str(body.get("kind")), body.get("body")
        if kind not in ACTIONS or not CALL_SID.fullmatch(sid):
            return {"status": 400, "body": {"error": "not a call action"}}

        async def read_body() -> dict[str, Any]:
            return given if isinstance(given, dict) else {}

        response = await act_on(service, sid, kind, read_body)
        return {"status": response.status_code, "body": json.loads(bytes(response.body))}

    return control
