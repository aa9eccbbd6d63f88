"""``voiceagent twilio setup`` and ``twilio dial`` through the real twilio SDK, its requests sent to a
fake Twilio REST API on loopback (never the real one): the SDK's own HTTP client, with the host
rewritten, so form encoding and authentication are the SDK's."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from twilio.http.http_client import TwilioHttpClient

from voiceagent.twilio_setup import SetupError, dial_command, setup_command

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
NUMBER = "+15557654321"
NUMBER_SID = "PN" + "ab" * 16
CALL_SID = "CA" + "cd" * 16
ENV = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_BASE_URL": "https://voice.example.com"}
VOICE_URL = "https://voice.example.com/twilio/voice"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    user: str
    password: str


@dataclass
class FakeTwilioApi:
    """What the fake REST API holds and what reached it."""

    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)  # sid -> IncomingPhoneNumber
    requests: list[Seen] = field(default_factory=list)
    fail_calls_with: tuple[int, int, str] | None = None  # (HTTP status, Twilio code, message)
    base_url: str = ""

    def answer(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        if (seen.user, seen.password) != (ACCOUNT, TOKEN):
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        prefix = f"/2010-04-01/Accounts/{ACCOUNT}"
        if seen.method == "GET" and seen.path == f"{prefix}/IncomingPhoneNumbers.json":
            found = [n for n in self.numbers.values() if n["phone_number"] == seen.query.get("PhoneNumber")]
            return 200, {"incoming_phone_numbers": found, "page": 0, "page_size": 2, "start": 0, "end": len(found)}
        for sid, number in self.numbers.items():
            if seen.method == "POST" and seen.path == f"{prefix}/IncomingPhoneNumbers/{sid}.json":
                number["voice_url"] = seen.form.get("VoiceUrl", number["voice_url"])
                number["voice_method"] = seen.form.get("VoiceMethod", number["voice_method"])
                for form_name, field_name in (
                    ("VoiceApplicationSid", "voice_application_sid"),
                    ("TrunkSid", "trunk_sid"),
                ):
                    if form_name in seen.form:  # an empty value detaches
                        number[field_name] = seen.form[form_name] or None
                return 200, number
        if seen.method == "POST" and seen.path == f"{prefix}/Calls.json":
            if self.fail_calls_with is not None:
                status, code, message = self.fail_calls_with
                return status, {"code": code, "message": message, "status": status}
            return 201, {"sid": CALL_SID, "status": "queued", "to": seen.form["To"], "from": seen.form["From"]}
        return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}


@pytest.fixture
def api() -> Iterator[FakeTwilioApi]:
    state = FakeTwilioApi()
    state.numbers[NUMBER_SID] = {
        "sid": NUMBER_SID,
        "account_sid": ACCOUNT,
        "phone_number": NUMBER,
        "friendly_name": "Riverside Bistro",
        "voice_url": "https://demo.twilio.com/welcome/voice/",
        "voice_method": "GET",
        "voice_application_sid": None,
        "trunk_sid": None,
    }

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
            user, _, password = (
                base64.b64decode(credentials).decode().partition(":") if scheme == "Basic" else ("", "", "")
            )
            seen = Seen(
                self.command,
                url.path,
                {k: v[-1] for k, v in parse_qs(url.query).items()},
                {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()},
                user,
                password,
            )
            state.requests.append(seen)
            status, payload = state.answer(seen)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Loopback(TwilioHttpClient):  # type: ignore[misc]  # subclassing Any: twilio ships no types
    """The SDK's own HTTP client, sending every request to the fake API instead of api.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self.base = urlsplit(base_url)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname == "api.twilio.com", url  # never anywhere else
        rewritten = urlunsplit((self.base.scheme, self.base.netloc, parts.path, parts.query, ""))
        response = super().request(method, rewritten, *args, **kwargs)
        self.session.close()  # no keep-alive connection outlives the test
        return response


def test_setup_points_the_numbers_voice_webhook_at_the_service_and_says_what_changed(api: FakeTwilioApi) -> None:
    lines = setup_command(ENV, "+1 (555) 765-4321", None, http_client=Loopback(api.base_url))

    lookup, update = api.requests
    assert (lookup.method, lookup.query["PhoneNumber"]) == ("GET", NUMBER)
    assert update.method == "POST" and update.path.endswith(f"/IncomingPhoneNumbers/{NUMBER_SID}.json")
    assert update.form == {"VoiceUrl": VOICE_URL, "VoiceMethod": "POST"}
    assert all((seen.user, seen.password) == (ACCOUNT, TOKEN) for seen in api.requests)
    assert api.numbers[NUMBER_SID]["voice_url"] == VOICE_URL
    assert lines == [
        f"{NUMBER} (Riverside Bistro), {NUMBER_SID}:",
        f"  voice_url: https://demo.twilio.com/welcome/voice/ -> {VOICE_URL}",
        "  voice_method: GET -> POST",
        "A call to this number now reaches the service.",
    ]


def test_setup_changes_nothing_when_the_number_already_points_here(api: FakeTwilioApi) -> None:
    api.numbers[NUMBER_SID] |= {"voice_url": VOICE_URL, "voice_method": "POST"}
    lines = setup_command(ENV, NUMBER, None, http_client=Loopback(api.base_url))
    assert [seen.method for seen in api.requests] == ["GET"]
    assert lines[-1] == "Nothing to change: the number already points here."
    assert f"  voice_url: {VOICE_URL} (unchanged)" in lines


def test_setup_with_url_overrides_public_base_url(api: FakeTwilioApi) -> None:
    setup_command(ENV, NUMBER, "https://abc123.ngrok.app/", http_client=Loopback(api.base_url))
    assert api.requests[-1].form["VoiceUrl"] == "https://abc123.ngrok.app/twilio/voice"


def test_setup_names_a_number_the_account_does_not_have(api: FakeTwilioApi) -> None:
    with pytest.raises(SetupError, match=r"\+15550000000 is not a phone number of account AC"):
        setup_command(ENV, "+15550000000", None, http_client=Loopback(api.base_url))
    assert [seen.method for seen in api.requests] == ["GET"]


def test_wrong_credentials_point_at_account_info(api: FakeTwilioApi) -> None:
    with pytest.raises(SetupError) as refused:
        setup_command({**ENV, "TWILIO_AUTH_TOKEN": "stale"}, NUMBER, None, http_client=Loopback(api.base_url))
    message = str(refused.value)
    assert "HTTP 401, error 20003" in message and "Account Info" in message and "stale" not in message


def test_dial_places_an_outbound_call_whose_twiml_comes_from_the_webhook(api: FakeTwilioApi) -> None:
    lines = dial_command(ENV, "+15551230000", NUMBER, None, http_client=Loopback(api.base_url))
    [create] = api.requests
    assert create.method == "POST" and create.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert create.form == {"To": "+15551230000", "From": NUMBER, "Url": VOICE_URL, "Method": "POST"}
    assert lines[0] == f"Calling +15551230000 from {NUMBER}: {CALL_SID}."


def test_dial_explains_a_trial_accounts_refusal(api: FakeTwilioApi) -> None:
    api.fail_calls_with = (400, 21219, "The number +15551230000 is unverified.")
    with pytest.raises(SetupError, match="error 21219.*verify it under Phone Numbers > Verified Caller IDs"):
        dial_command(ENV, "+15551230000", NUMBER, None, http_client=Loopback(api.base_url))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_BASE_URL": "https://v.example.com"}, "TWILIO_ACCOUNT_SID not set"),
        ({**ENV, "TWILIO_ACCOUNT_SID": "SK123"}, "is not an account SID"),
        ({**ENV, "PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL is not set"),
        ({**ENV, "PUBLIC_BASE_URL": "http://voice.example.com"}, "must be https://"),
        ({**ENV, "PUBLIC_BASE_URL": "http://127.0.0.1:8080"}, "must be https://"),  # Twilio cannot reach it
    ],
)
def test_what_must_be_fixed_first_is_named_before_any_request(env: dict[str, str], says: str) -> None:
    class Unreachable(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
        def request(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("no request may be sent")

    with pytest.raises(SetupError, match=says):
        setup_command(env, NUMBER, None, http_client=Unreachable())


def test_a_number_that_is_not_e164_is_refused(api: FakeTwilioApi) -> None:
    with pytest.raises(SetupError, match="'555-1234' is not an E.164 phone number"):
        dial_command(ENV, "555-1234", NUMBER, None, http_client=Loopback(api.base_url))
    assert api.requests == []


def test_the_command_reports_what_to_fix_and_exits_1() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "PUBLIC_BASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "voiceagent", "twilio", "dial", "+15551230000", "--from", NUMBER],
        env={**clean, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("voiceagent twilio dial: PUBLIC_BASE_URL is not set")
    assert TOKEN not in result.stderr + result.stdout


APP_SID = "AP" + "ef" * 16
TRUNK_SID = "TK" + "12" * 16


@pytest.mark.parametrize(
    ("attached", "names"),
    [
        ({"voice_application_sid": APP_SID}, f"TwiML App {APP_SID}"),
        ({"trunk_sid": TRUNK_SID}, f"Elastic SIP Trunk {TRUNK_SID}"),
    ],
)
def test_a_number_whose_voice_url_twilio_ignores_is_not_reported_as_done(
    api: FakeTwilioApi, attached: dict[str, str], names: str
) -> None:
    """Even when voice_url already points here: with an app or trunk attached, calls never reach us."""
    api.numbers[NUMBER_SID] |= {"voice_url": VOICE_URL, "voice_method": "POST", **attached}
    with pytest.raises(SetupError) as refused:
        setup_command(ENV, NUMBER, None, http_client=Loopback(api.base_url))
    message = str(refused.value)
    assert names in message and "ignores its voice URL" in message and "--detach" in message
    assert [seen.method for seen in api.requests] == ["GET"]  # nothing changed behind the operator's back

    lines = setup_command(ENV, NUMBER, None, http_client=Loopback(api.base_url), detach=True)
    update = api.requests[-1]
    assert update.method == "POST" and update.form == {"VoiceUrl": VOICE_URL, "VoiceMethod": "POST"} | {
        {"voice_application_sid": "VoiceApplicationSid", "trunk_sid": "TrunkSid"}[name]: "" for name in attached
    }
    assert api.numbers[NUMBER_SID]["voice_application_sid"] is None and api.numbers[NUMBER_SID]["trunk_sid"] is None
    assert f"  detached from {names}" in lines and lines[-1] == "A call to this number now reaches the service."


def test_an_unreachable_twilio_api_is_one_line_naming_what_to_check() -> None:
    class Offline(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
        def request(self, *args: Any, **kwargs: Any) -> Any:
            import requests

            raise requests.exceptions.ConnectionError("Failed to resolve 'api.twilio.com'")

    with pytest.raises(SetupError) as refused:
        setup_command(ENV, NUMBER, None, http_client=Offline())
    message = str(refused.value)
    assert "could not be reached (ConnectionError)" in message and "network, DNS" in message
    assert "\n" not in message and TOKEN not in message
