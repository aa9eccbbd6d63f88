"""Placing a call the way Twilio does, up to the first media message: the voice webhook's form and
signature, the checks Twilio makes on the answer, the TwiML verbs it runs up to ``<Connect><Stream>``, and
the signed WebSocket upgrade (docs/protocol.md, "## 1. Twilio Media Streams": "### TwiML",
"### Signatures"); and what comes after the stream, when the server ends it: the ``<Connect action>``
request and the verbs of its answer ("### After the stream: Connect action").

The form and TwiML parts are pure; ``post_webhook`` and ``open_stream`` do the I/O.
``FakeTwilioCaller`` strings them together; what happens on the stream is its business.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

API_VERSION = "2010-04-01"
HTTP_USER_AGENT = "TwilioProxy/1.1"
WS_USER_AGENT = "Twilio.TmeWs/1.0"
WEBHOOK_TIMEOUT_SECONDS = 15.0  # Twilio's default voice webhook timeout
STREAM_OPEN_TIMEOUT_SECONDS = 10.0
MAX_PARAMETER_CHARS = 500

# Verbs Twilio runs before reaching <Connect> without needing anything from the caller.
_PASS_THROUGH_VERBS = frozenset({"Say", "Play", "Pause", "Start", "Stop"})
_CALL_ENDING_VERBS = frozenset({"Hangup", "Reject"})

# ------------------------------------------------------------------------------ the webhook and its TwiML


def webhook_params(
    *, account_sid: str, call_sid: str, from_number: str, to_number: str, call_status: str = "ringing"
) -> dict[str, str]:
    """The form fields Twilio posts to a voice URL when a call comes in (``call_status="in-progress"``: the
    standard parameters of a later request on the same call, such as the ``<Connect action>``)."""
    caller_geo = {"City": "SAN FRANCISCO", "State": "CA", "Zip": "94105", "Country": "US"}
    called_geo = {"City": "OAKLAND", "State": "CA", "Zip": "94612", "Country": "US"}
    params = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call_sid,
        "CallStatus": call_status,
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }
    for suffix, value in caller_geo.items():
        params[f"From{suffix}"] = params[f"Caller{suffix}"] = value
    for suffix, value in called_geo.items():
        params[f"To{suffix}"] = params[f"Called{suffix}"] = value
    return params


@dataclass(frozen=True, slots=True)
class StreamInstruction:
    """A ``<Connect><Stream>`` found in TwiML."""

    url: str
    parameters: dict[str, str]
    warnings: list[str] = field(default_factory=list)  # accepted, but Twilio would complain
    action: str | None = None  # <Connect action>: requested once the server ends the stream (as written)
    method: str = "POST"
    status_callback: str | None = None  # <Stream statusCallback>: told stream-started/-stopped/-error
    status_callback_method: str = "POST"


class TwimlRefused(ValueError):
    """The TwiML opens no bidirectional stream (or one Twilio would fail to open)."""


def _response(text: bytes | str) -> ElementTree.Element:
    """The document's ``<Response>``, or ``TwimlRefused`` with Twilio's error 12100."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise TwimlRefused(f"12100 document parse failure: {exc}") from None
    if root.tag != "Response":
        raise TwimlRefused(f"12100 root element is <{root.tag}>, not <Response>")
    return root


def parse_twiml(text: bytes | str) -> StreamInstruction:
    """Run the TwiML's verbs in order up to ``<Connect><Stream>``, or raise ``TwimlRefused``."""
    root = _response(text)
    for verb in root:
        if verb.tag == "Connect":
            return _connect_stream(verb)
        if verb.tag in _CALL_ENDING_VERBS:
            raise TwimlRefused(f"<{verb.tag}> ends the call before any <Connect><Stream>")
        if verb.tag not in _PASS_THROUGH_VERBS:
            raise TwimlRefused(f"<{verb.tag}> before any <Connect><Stream> is not emulated")
    raise TwimlRefused("no <Connect><Stream>: the call ends when the TwiML runs out")


def _connect_stream(connect_verb: ElementTree.Element) -> StreamInstruction:
    stream = connect_verb.find("Stream")
    if stream is None:
        nouns = [child.tag for child in connect_verb]
        raise TwimlRefused(f"<Connect> holds {nouns}, not <Stream>")
    url = stream.get("url", "")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise TwimlRefused(f"31920 Stream url {url!r} is not a ws(s):// URL")
    if parts.query:
        raise TwimlRefused(f"31920 Stream url {url!r} has a query string; use <Parameter>")
    warnings = []
    if stream.get("track", "inbound_track") != "inbound_track":
        warnings.append(f"<Connect><Stream track={stream.get('track')!r}>: only inbound_track is supported")
    parameters: dict[str, str] = {}
    for parameter in stream.findall("Parameter"):
        name, value = parameter.get("name", ""), parameter.get("value", "")
        if not name or len(name) >= MAX_PARAMETER_CHARS or len(value) >= MAX_PARAMETER_CHARS:
            warnings.append(f"<Parameter name={name[:40]!r}>: name and value must be 1-499 chars")
        parameters[name] = value
    method = connect_verb.get("method", "POST").upper()
    if method not in ("GET", "POST"):
        warnings.append(f"<Connect method={method!r}>: only GET and POST are allowed; Twilio uses POST")
        method = "POST"
    action = connect_verb.get("action") or None
    reports, reports_method = stream.get("statusCallback") or None, stream.get("statusCallbackMethod", "POST").upper()
    return StreamInstruction(
        url=url, parameters=parameters, warnings=warnings, action=action, method=method,
        status_callback=reports, status_callback_method=reports_method,
    )  # fmt: skip


# ------------------------------------------------------------------------------ after the stream


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Dial:
    """``<Dial>`` to a number (its text or a ``<Number>``) or a ``<Sip>`` URI."""

    number: str | None
    sip: str | None
    caller_id: str | None
    action: str | None = None  # <Dial action>: requested, with DialCallStatus, once the dialled leg is over
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class OtherVerb:
    """A verb the fake does not follow (``<Connect>``, ``<Redirect>``, ...): recorded, not run."""

    tag: str


Verb = Say | Hangup | Dial | OtherVerb


@dataclass(frozen=True, slots=True)
class AfterStream:
    """What Twilio did once the server ended the stream: the ``<Connect action>`` request and its answer."""

    url: str  # as Twilio requested (and signed) it
    status: int | None  # the HTTP status; None when the request failed
    twiml: str
    verbs: tuple[Verb, ...]  # the answer's verbs, in order (empty when it was refused: see ``error``)
    error: str | None = None  # the Twilio error the answer would cause, or why the request failed

    @property
    def said(self) -> list[str]:
        return [verb.text for verb in self.verbs if isinstance(verb, Say)]

    @property
    def hung_up(self) -> bool:
        """The answer ends the call: ``<Hangup/>``, or nothing left to run after its verbs."""
        return self.error is None and not any(isinstance(verb, (Dial, OtherVerb)) for verb in self.verbs)

    @property
    def dialled(self) -> Dial | None:
        return next((verb for verb in self.verbs if isinstance(verb, Dial)), None)


def parse_after_stream(text: bytes | str) -> tuple[Verb, ...]:
    """The verbs of a ``<Connect action>`` answer, or ``TwimlRefused`` (error 12100) for a broken document.
    ``<Hangup>`` ends the document: nothing after it runs."""
    root = _response(text)
    verbs: list[Verb] = []
    for verb in root:
        if verb.tag == "Say":
            verbs.append(Say((verb.text or "").strip()))
        elif verb.tag == "Hangup":
            verbs.append(Hangup())
            break
        elif verb.tag == "Dial":
            number, sip = verb.find("Number"), verb.find("Sip")
            direct = (verb.text or "").strip() or None
            verbs.append(
                Dial(
                    number=(number.text or "").strip() if number is not None else direct,
                    sip=(sip.text or "").strip() if sip is not None else None,
                    caller_id=verb.get("callerId"),
                    action=verb.get("action") or None,
                    method=(verb.get("method") or "POST").upper(),
                )
            )
        else:
            verbs.append(OtherVerb(verb.tag))
    return tuple(verbs)


# ------------------------------------------------------------------------------ I/O


class StreamRefused(Exception):
    """The WebSocket upgrade of the stream failed (Twilio error 31920)."""


def signature_headers(
    validator: RequestValidator | None, url: str, params: dict[str, str], name: str
) -> dict[str, str]:
    """``{name: signature}`` of ``url`` and ``params``; nothing when there is no auth token to sign with."""
    return {name: validator.compute_signature(url, params)} if validator is not None else {}


async def post_webhook(
    url: str,
    form: dict[str, str],
    *,
    validator: RequestValidator | None,
    http_client: httpx.AsyncClient | None = None,
    via: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """Request a webhook as Twilio does: the form as the POST body (``method="GET"``: as the query string),
    signed for ``url`` when there is a ``validator``. ``via`` (a proxy or load balancer in between): the
    request goes to that scheme and host instead, still signed for ``url``; ``headers``: what it adds."""
    sent = {"User-Agent": HTTP_USER_AGENT, "I-Twilio-Idempotency-Token": str(uuid.uuid4()), **(headers or {})}
    if method == "GET":
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(query="&".join(filter(None, (parts.query, urlencode(form))))))
        form = {}
    sent |= signature_headers(validator, url, form, "X-Twilio-Signature")
    target = rehost(url, via, websocket=False) if via else url
    if http_client is not None:
        return await http_client.request(method, target, data=form or None, headers=sent)
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, trust_env=False) as client:
        return await client.request(method, target, data=form or None, headers=sent)


def twiml_of(response: httpx.Response) -> bytes:
    """The TwiML of a webhook answer, or ``TwimlRefused`` with the error Twilio would log instead."""
    if response.status_code != 200:
        raise TwimlRefused(f"11200 webhook answered HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "")
    if "xml" not in content_type and "html" not in content_type:
        raise TwimlRefused(f"12300 invalid Content-Type {content_type!r} for TwiML")
    return response.content


def rehost(url: str, base: str, *, websocket: bool = True) -> str:
    """``url`` with the scheme and host of ``base`` (for a WebSocket: http → ws, https → wss)."""
    target, parts = urlsplit(base), urlsplit(url)
    scheme = target.scheme
    if websocket:
        scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return urlunsplit((scheme, target.netloc, parts.path, parts.query, ""))


async def open_stream(
    url: str,
    *,
    validator: RequestValidator | None,
    via: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ClientConnection:
    """Open the stream's WebSocket, signed for ``url``; ``via`` (like a load balancer) opens it on another
    host while the signature still covers ``url`` as the TwiML wrote it; ``headers``: what a proxy adds."""
    try:
        return await connect(
            rehost(url, via) if via else url,
            additional_headers={**(headers or {}), **signature_headers(validator, url, {}, "x-twilio-signature")},
            user_agent_header=WS_USER_AGENT,
            compression=None,
            proxy=None,
            ping_interval=None,
            max_size=None,
            open_timeout=STREAM_OPEN_TIMEOUT_SECONDS,
        )
    except InvalidStatus as exc:
        raise StreamRefused(f"31920 WebSocket upgrade refused: HTTP {exc.response.status_code}") from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise StreamRefused(f"31920 WebSocket upgrade failed: {exc!r}") from None
