"""``voiceagent twilio setup`` and ``voiceagent twilio dial``: the two Twilio console chores, from the
command line, through the twilio SDK's REST client.

* ``setup --number +1…``: find the account's IncomingPhoneNumber with that number and point its voice
  webhook ("A call comes in") at ``PUBLIC_BASE_URL/twilio/voice``, HTTP POST; print what changed.
* ``dial +1… --from +1…``: an outbound call from one of the account's numbers whose TwiML comes from the
  same webhook, so the agent greets whoever answers.

Both need ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` (the console's Account Info) and an HTTPS
``PUBLIC_BASE_URL`` (or ``--url``). Nothing here runs while calls are served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

VOICE_PATH = "/twilio/voice"
E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}", re.ASCII)

# Twilio error codes a newcomer meets first, and what to do about each
_HINTS = {
    20003: "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be the pair shown under Account Info in the Twilio console",
    20404: "no such resource in this account: check the number, and that TWILIO_ACCOUNT_SID is the account owning it",
    21211: "the number to call is not a valid phone number (E.164: +15551234567)",
    21212: "--from is not a valid caller ID: use a number of this account (see Phone Numbers > Manage > Active)",
    21210: "--from is not a number of this account (or a verified caller ID)",
    21219: "a trial account can only call verified numbers: verify it under Phone Numbers > Verified Caller IDs",
    21402: "Twilio refused the webhook URL: PUBLIC_BASE_URL must be a public https:// address",
}


class SetupError(Exception):
    """Something the operator must fix; the message says what (never a secret)."""


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str


def account_from(env: Mapping[str, str]) -> TwilioAccount:
    """TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or SetupError naming what is missing or malformed."""
    sid = (env.get("TWILIO_ACCOUNT_SID") or "").strip()
    token = (env.get("TWILIO_AUTH_TOKEN") or "").strip()
    missing = [name for name, value in (("TWILIO_ACCOUNT_SID", sid), ("TWILIO_AUTH_TOKEN", token)) if not value]
    if missing:
        raise SetupError(
            f"{' and '.join(missing)} not set: copy them from Account Info on the Twilio console's front page"
        )
    if not ACCOUNT_SID.fullmatch(sid):
        raise SetupError(f"TWILIO_ACCOUNT_SID={sid[:6]}… is not an account SID (AC followed by 32 hex digits)")
    return TwilioAccount(sid, token)


def voice_url_from(env: Mapping[str, str], url: str | None) -> str:
    """``URL/twilio/voice`` for ``--url`` or PUBLIC_BASE_URL, which must be https:// (Twilio's webhooks are)."""
    name = "--url" if url else "PUBLIC_BASE_URL"
    base = (url or env.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if not base:
        raise SetupError(
            "PUBLIC_BASE_URL is not set: the https:// address where Twilio reaches this service (or pass --url)"
        )
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise SetupError(f"{name}={base!r} must be https://YOUR-HOST[/path]: Twilio calls webhooks over HTTPS only")
    return base + VOICE_PATH


def e164(number: str, what: str) -> str:
    cleaned = re.sub(r"[\s().-]", "", number)
    if not E164.fullmatch(cleaned):
        raise SetupError(f"{what} {number!r} is not an E.164 phone number such as +15551234567")
    return cleaned


def client_for(account: TwilioAccount, http_client: Any = None) -> Any:
    """The twilio SDK's REST client (``http_client``: a ``twilio.http.HttpClient``, for tests)."""
    from twilio.rest import Client

    return Client(account.account_sid, account.auth_token, http_client=http_client)


@dataclass(frozen=True)
class NumberChange:
    sid: str
    phone_number: str
    friendly_name: str
    before: tuple[str | None, str | None]  # voice_url, voice_method
    after: tuple[str | None, str | None]
    detached: tuple[str, ...] = ()  # what was detached that made Twilio ignore voice_url ("TwiML App AP…")

    @property
    def changed(self) -> bool:
        return self.before != self.after or bool(self.detached)


def _overriding(record: Any) -> dict[str, str]:
    """What makes Twilio ignore the number's ``voice_url`` (the SDK's docs for the resource: it "will not be
    used if a voice_application_sid or a trunk_sid is set"): the fields to clear, with what each names."""
    found: dict[str, str] = {}
    if application := getattr(record, "voice_application_sid", None):
        found["voice_application_sid"] = f"TwiML App {application}"
    if trunk := getattr(record, "trunk_sid", None):
        found["trunk_sid"] = f"Elastic SIP Trunk {trunk}"
    return found


def point_number(client: Any, number: str, voice_url: str, *, detach: bool = False) -> NumberChange:
    """Point the IncomingPhoneNumber ``number`` of the client's account at ``voice_url`` (POST). A number
    attached to a TwiML App or a SIP trunk never reaches the webhook: that is an error unless ``detach``."""
    found = _rest(lambda: client.incoming_phone_numbers.list(phone_number=number, limit=2))
    if not found:
        raise SetupError(
            f"{number} is not a phone number of account {client.account_sid}: buy or port it first "
            "(Phone Numbers > Manage > Active numbers lists the account's numbers)"
        )
    record = found[0]
    overriding = _overriding(record)
    if overriding and not detach:
        names = " and ".join(overriding.values())
        raise SetupError(
            f"{number} is attached to {names}, so Twilio ignores its voice URL and calls never reach this "
            "service. Run again with --detach to detach it and point the number here, or configure "
            f"{VOICE_PATH} as the voice URL of that {'TwiML App' if 'voice_application_sid' in overriding else 'trunk'}"
        )
    before = (record.voice_url or None, record.voice_method or None)
    if before == (voice_url, "POST") and not overriding:
        after_record = record
    else:
        resource = client.incoming_phone_numbers(record.sid)
        cleared = dict.fromkeys(overriding, "")  # an empty value detaches (Twilio's REST API)
        after_record = _rest(lambda: resource.update(voice_url=voice_url, voice_method="POST", **cleared))
    return NumberChange(
        detached=tuple(overriding.values()),
        sid=record.sid,
        phone_number=record.phone_number,
        friendly_name=record.friendly_name or "",
        before=before,
        after=(after_record.voice_url, after_record.voice_method),
    )


def dial(client: Any, to: str, from_: str, voice_url: str) -> str:
    """Place an outbound call whose TwiML comes from ``voice_url``; returns its Call SID."""
    call = _rest(lambda: client.calls.create(to=to, from_=from_, url=voice_url, method="POST"))
    return str(call.sid)


def _rest(request: Any) -> Any:
    """``request()``, with a Twilio REST error turned into a SetupError that says what to do."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    try:
        return request()
    except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors: no network, DNS, a proxy
        raise SetupError(
            f"the Twilio API could not be reached ({type(exc).__name__}): check this machine's network, DNS "
            "and any HTTPS proxy setting (HTTPS_PROXY)"
        ) from None
    except TwilioRestException as exc:
        raise SetupError(_explain(exc.status, exc.code, exc.msg)) from None
    except TwilioException as exc:
        # a list() that fails carries the raw response instead: ('Unable to fetch page', Response)
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        if status is None:
            raise SetupError(f"the Twilio API could not be reached: {exc}") from None
        try:
            body = json.loads(getattr(response, "text", "") or "{}")
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body.get("code"), int) else None
        raise SetupError(_explain(status, code, str(body.get("message") or exc.args[0]))) from None


def _explain(status: int, code: int | None, message: str) -> str:
    hint = _HINTS.get(code or 0) or (_HINTS[20003] if status == 401 else None)
    detail = f"Twilio answered HTTP {status}" + (f", error {code}" if code else "") + f": {message}"
    return detail + (f". {hint}" if hint else "")


# ---------------------------------------------------------------- the commands


def setup_command(
    env: Mapping[str, str], number: str, url: str | None, http_client: Any = None, *, detach: bool = False
) -> list[str]:
    """``voiceagent twilio setup``: the lines to print (SetupError if something must be fixed first)."""
    account = account_from(env)
    voice_url = voice_url_from(env, url)
    change = point_number(client_for(account, http_client), e164(number, "--number"), voice_url, detach=detach)
    name = f" ({change.friendly_name})" if change.friendly_name and change.friendly_name != change.phone_number else ""
    lines = [f"{change.phone_number}{name}, {change.sid}:"]
    lines += [f"  detached from {what}" for what in change.detached]
    for label, old, new in zip(("voice_url", "voice_method"), change.before, change.after, strict=True):
        lines.append(f"  {label}: {old or '(none)'} -> {new}" if old != new else f"  {label}: {new} (unchanged)")
    lines.append(
        "A call to this number now reaches the service."
        if change.changed
        else "Nothing to change: the number already points here."
    )
    return lines


def dial_command(env: Mapping[str, str], to: str, from_: str, url: str | None, http_client: Any = None) -> list[str]:
    """``voiceagent twilio dial``: the lines to print."""
    account = account_from(env)
    voice_url = voice_url_from(env, url)
    call_sid = dial(client_for(account, http_client), e164(to, "the number to call"), e164(from_, "--from"), voice_url)
    return [
        f"Calling {to} from {from_}: {call_sid}.",
        f"When it is answered, Twilio fetches {voice_url} and the agent greets whoever picked up.",
    ]
