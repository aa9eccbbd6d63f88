"""Twilio's HTTP requests about a call, each signed (``X-Twilio-Signature``) and answered with TwiML:
the call webhook (``voice``), and after the stream ``<Connect action>`` (``stream_ended``), ``<Dial
action>`` (``dial_ended``) and ``<Stream statusCallback>`` (``stream_status``). On a shared line any
instance answers any of them: what it needs of the call is in the line's shared state."""

from __future__ import annotations

import re
import time
from typing import assert_never
from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from voiceagent.admission import (
    Busy,
    CallAnswered,
    RateLimited,
    Replayed,
    other_party,
)
from voiceagent.call import Farewell
from voiceagent.config import Settings
from voiceagent.line.calls import Ended, Lost
from voiceagent.line.lost import LOST_EVENTS, RestDoor
from voiceagent.line.resume import RESUME_PARAMETER
from voiceagent.logs import CallLog, mask_number
from voiceagent.service import Service
from voiceagent.twilio import twiml
from voiceagent.twilio.security import TOKEN_PARAMETER

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}", re.ASCII)  # used with fullmatch: no trailing newline
MAX_FORM_FIELDS = 100  # Twilio's call webhooks carry about 30
UNANSWERED_DIAL = frozenset({"no-answer", "busy", "failed"})  # DialCallStatus of a transfer nobody took


def _xml(document: str) -> Response:
    return Response(document, media_type="text/xml")


_FORWARDED_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
"""X-Forwarded-Proto values we accept, as the https/http base they mean (proxies send ws/wss on upgrades)."""


def public_base(connection: HTTPConnection) -> str | None:
    """Where Twilio reaches us: PUBLIC_BASE_URL, else what the request says (fine for direct setups).
    None, logged, when a proxy header names a scheme that cannot be ours."""
    settings: Settings = connection.app.state.service.settings
    if settings.public_base_url:
        return settings.public_base_url
    scheme = "https" if connection.url.scheme in ("https", "wss") else "http"
    forwarded = connection.headers.get("x-forwarded-proto")
    if forwarded is not None:
        named = _FORWARDED_SCHEMES.get(forwarded.split(",")[0].strip().lower())
        if named is None:
            CallLog().warning("request_refused", reason="unknown X-Forwarded-Proto", value=forwarded[:16])
            return None
        scheme = named
    return f"{scheme}://{connection.headers.get('host') or 'localhost'}"


async def _signed_form(request: Request, base: str, log: CallLog) -> dict[str, str] | None:
    """The webhook's form fields if the request is signed by Twilio, else None (logged)."""
    service: Service = request.app.state.service
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    params = {key: str(value) for key, value in form.multi_items()}
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not service.signatures.valid(url, params, request.headers.get("x-twilio-signature")):
        if service.rejections_logged.allow("signature", time.monotonic()):  # a flood logs once a minute
            log.warning(
                "webhook_rejected",
                path=request.url.path,
                reason="bad or missing X-Twilio-Signature",
                checked_against=base + request.url.path,  # what the signature must cover (PUBLIC_BASE_URL)
                arrived_as=f"{request.url.scheme}://{request.headers.get('host', '?')}",
                hint="Twilio signs the URL it called: PUBLIC_BASE_URL must be exactly the https:// address "
                "configured on the number (scheme, host, port, path prefix)",
            )
        return None
    return params


async def _signed_webhook(request: Request) -> tuple[Service, str, dict[str, str]] | None:
    """A webhook from Twilio: the service, our public base URL and the signed form; None (logged) if not."""
    base = public_base(request)
    params = None if base is None else await _signed_form(request, base, CallLog())
    if base is None or params is None:
        return None
    return request.app.state.service, base, params


async def voice(request: Request) -> Response:
    """Twilio's incoming-call webhook: answer with TwiML that connects the call to our media stream."""
    signed = await _signed_webhook(request)
    if signed is None:
        return PlainTextResponse("Forbidden", status_code=403)
    service, base, params = signed
    call_sid = params.get("CallSid", "")
    if not CALL_SID.fullmatch(call_sid):
        CallLog().warning("webhook_rejected", reason="missing or malformed CallSid")
        return PlainTextResponse("Bad Request", status_code=400)
    log = CallLog(call_sid)
    full = service.settings.log_full_numbers
    party, ours = other_party(params)  # an outbound call's From is our own number
    kind = _kind(service, call_sid, params)
    verdict = service.admission.webhook(call_sid, party, service.webhook_load())
    if isinstance(verdict, CallAnswered) and not await service.line_calls.first_webhook(call_sid):
        verdict = Replayed()  # answered already, by another instance of the line
    match verdict:
        case Busy(reason=reason, calls=calls):
            log.warning("call_refused", reason=reason, calls=calls)
            return _xml(twiml.say_and_hang_up(service.settings.busy_message))
        case Replayed():
            # Twilio signatures carry no timestamp: a captured webhook replayed must not buy model sessions
            log.warning("webhook_replayed", detail="this CallSid already got its stream token and model session")
            return _xml(twiml.say_and_hang_up(""))
        case RateLimited(reason=reason):
            log.warning("call_refused", reason=reason, caller=mask_number(party, full=full))
            return _xml(twiml.say_and_hang_up(service.settings.busy_message))
        case CallAnswered(token=token):
            log.info(
                "call_incoming",
                caller=mask_number(params.get("From"), full=full),
                to=mask_number(params.get("To"), full=full),
                kind=kind,
            )
            stream_params = {TOKEN_PARAMETER: token, "from": party, "to": ours}
            stream_params |= service.eval_marks.stream_parameters(call_sid, kind)
            if not service.draining:  # draining (the line is shared): the stream goes to another instance
                service.prewarm(call_sid, caller=party or None, called=ours or None, kind=kind)
                await service.line_calls.owned(call_sid)  # on record before the stream can land elsewhere
                stream_base = _this_instance(service, base)
                return _xml(
                    twiml.connect(base, stream_params, stream_base=stream_base, status_callback=_reported(request))
                )
            return _xml(twiml.connect(base, stream_params, status_callback=_reported(request)))
        case _:
            assert_never(verdict)


def _kind(service: Service, call_sid: str, params: dict[str, str]) -> str:
    """The call's kind as a signed webhook's eval mark says (``voiceagent.twilio.eval_mark``); a mark that
    is not this call's is ignored, and logged (at most once a minute)."""
    if service.eval_marks.forged(call_sid, params) and service.rejections_logged.allow("eval mark", time.monotonic()):
        CallLog(call_sid).warning("eval_mark_ignored", reason="not this call's mark (or no auth token to check it)")
    return service.eval_marks.kind(call_sid, params)


def _this_instance(service: Service, base: str) -> str | None:
    """Where a stream reaches this instance, whose session waits for it (Twilio's guidance for several
    servers: per-instance addresses): ``VOICEAGENT_INSTANCE_URL``, else, when the line is shared,
    ``PUBLIC_BASE_URL/instances/<instance>`` for a proxy to route on. A stream that arrives at another
    instance anyway (a proxy without the rule, this instance gone) is served there, as without it."""
    if service.settings.instance_url:
        return service.settings.instance_url
    if not service.line.shared:
        return None  # one instance: the stream URL of old
    return _instance_base(base, service.line.instance)


def _reported(connection: HTTPConnection) -> bool:
    """Whether Twilio reports the stream's events (several instances and the REST API: ``stream_status``)."""
    door: RestDoor = connection.app.state.rest_door
    return door.open


def _instance_base(base: str, instance: str) -> str:
    return base.rstrip("/") + twiml.INSTANCE_PREFIX.format(instance=quote(instance, safe=":"))


def signed_stream_urls(service: Service, base: str, named: str | None) -> list[str]:
    """The stream URLs Twilio may have signed the upgrade for: ``/twilio/media`` (ours with
    ``VOICEAGENT_INSTANCE_URL``, or the line's), or the ``/instances/<named>/`` address of whichever
    instance answered the webhook."""
    if named is not None:
        return [twiml.stream_url(_instance_base(base, named))]
    own = service.settings.instance_url
    return [twiml.stream_url(base)] + ([twiml.stream_url(own)] if own else [])


async def stream_ended(request: Request) -> Response:
    """``<Connect action>``: Twilio asks what to do once the stream is over."""
    signed = await _signed_webhook(request)
    if signed is None:
        return PlainTextResponse("Forbidden", status_code=403)
    service, base, params = signed
    call_sid = params.get("CallSid", "")
    try:
        known = await service.line_calls.end_for_action(call_sid)
        if isinstance(known, Lost):
            if not await service.line_calls.first_resume(call_sid, known.owner):
                CallLog(call_sid).info("call_resume_twice", detail="the status callback door resumed it too")
            resumed = await _resume_twiml(request, base, call_sid, params)
            return _xml(resumed or twiml.say_and_hang_up(service.settings.unavailable_message))
    except Exception as exc:  # the line's shared state away: the caller hears a sentence, not an error tone
        CallLog(call_sid).error("stream_ended_lookup_failed", error=type(exc).__name__)
        return _xml(twiml.say_and_hang_up(service.settings.unavailable_message))
    end = known.end if isinstance(known, Ended) else None
    if end is not None and end.farewell is Farewell.TRANSFER and end.transfer_to:
        caller_id = service.settings.transfer_caller_id or params.get("To") or None
        CallLog(params.get("CallSid")).info("call_transferred", caller_id_set=caller_id is not None)
        return _xml(twiml.dial(end.transfer_to, caller_id, base))
    farewell = end.farewell if end is not None else Farewell.HANG_UP
    return _xml(twiml.say_and_hang_up(_farewell_message(service.settings, farewell)))


async def dial_ended(request: Request) -> Response:
    """``<Dial action>``: the transfer's leg is over. Nobody took it (``no-answer``, ``busy``, ``failed``):
    the caller hears so and is back with the agent on a new stream, the conversation carried over."""
    service: Service = request.app.state.service
    base = public_base(request)
    params = None if base is None else await _signed_form(request, base, CallLog())
    if base is None or params is None:
        return PlainTextResponse("Forbidden", status_code=403)
    call_sid, status = params.get("CallSid", ""), params.get("DialCallStatus", "")
    log = CallLog(call_sid)
    if status not in UNANSWERED_DIAL or not CALL_SID.fullmatch(call_sid):
        log.info("transfer_ended", dial_status=status)
        return _xml(twiml.say_and_hang_up(""))
    token = await service.transfer_unanswered(call_sid, status)
    if token is None:
        log.warning("transfer_unanswered", dial_status=status, back_to_agent=False)
        return _xml(twiml.say_and_hang_up(service.settings.unavailable_message))
    log.info("transfer_unanswered", dial_status=status, back_to_agent=True)
    party, ours = other_party(params)
    stream_params = {TOKEN_PARAMETER: token, "from": party, "to": ours}
    stream_params |= service.eval_marks.stream_parameters(call_sid, _kind(service, call_sid, params))
    message = service.settings.transfer_unanswered_message  # the conversation waits here: the stream too
    stream_base = _this_instance(service, base)
    return _xml(
        twiml.say_and_reconnect(
            message, base, stream_params, stream_base=stream_base, status_callback=_reported(request)
        )
    )


async def _resume_twiml(connection: HTTPConnection, base: str, call_sid: str, params: dict[str, str]) -> str | None:
    """The call's instance died mid-call: a new stream for it here, within the resume budget (else None)."""
    service: Service = connection.app.state.service
    settings = service.settings
    log = CallLog(call_sid)
    if not await service.line_calls.may_resume(call_sid, settings.max_resumes, settings.resume_window_seconds):
        log.warning("call_not_resumed", reason="over the resume budget, or resuming is off")
        return None
    log.info("call_resuming", detail="its instance is gone without an end: a new stream here")
    token = service.tokens.issue(call_sid, service.now())
    party, ours = other_party(params)
    stream_params = {TOKEN_PARAMETER: token, "from": party, "to": ours, RESUME_PARAMETER: "1"}
    stream_params |= service.eval_marks.stream_parameters(call_sid, _kind(service, call_sid, params))
    return twiml.connect(base, stream_params, status_callback=_reported(connection))


async def stream_status(request: Request) -> Response:
    """``<Stream statusCallback>``: Twilio reports a stream started, stopped or failed. A lost one whose
    instance is gone is resumed through the REST API (``voiceagent.line.lost``), after this answer."""
    signed = await _signed_webhook(request)
    if signed is None:
        return PlainTextResponse("Forbidden", status_code=403)
    service, base, params = signed
    call_sid, event = params.get("CallSid", ""), params.get("StreamEvent", "")
    CallLog(call_sid).info("stream_status", stream_event=event[:32], stream_error=params.get("StreamError", "")[:200])
    door: RestDoor = request.app.state.rest_door
    if event in LOST_EVENTS and CALL_SID.fullmatch(call_sid) and door.open:
        service.line.later(door.stream_lost(call_sid, lambda: _resume_twiml(request, base, call_sid, params)), "lost")
    return Response(status_code=204)


def _farewell_message(settings: Settings, farewell: Farewell) -> str:
    match farewell:
        case Farewell.HANG_UP:
            return ""
        case Farewell.UNAVAILABLE:
            return settings.unavailable_message
        case Farewell.BUSY:
            return settings.busy_message
        case Farewell.TRANSFER:  # without a destination: nothing to dial
            return settings.unavailable_message
        case _:
            assert_never(farewell)
