"""Behind a proxy without PUBLIC_BASE_URL, X-Forwarded-Proto decides the URL Twilio signed. Common proxies
send ``ws``/``wss`` on WebSocket requests; anything else is refused with one log line, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator

from voiceagent.app import create_app
from voiceagent.config import load_settings
from voiceagent.testing import TEST_AUTH_TOKEN, app_environment, webhook_params

UNREACHABLE_MODEL = "http://127.0.0.1:9"  # the webhook pre-warms a session; it need not succeed here


def client() -> TestClient:
    return TestClient(create_app(load_settings(app_environment(UNREACHABLE_MODEL))), base_url="http://voice.test")


def call_params(call_sid: str) -> dict[str, str]:
    return webhook_params(
        account_sid="AC" + "c" * 32, call_sid=call_sid, from_number="+15551234567", to_number="+15557654321"
    )


def signed(url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, params))


@pytest.mark.parametrize(
    ("forwarded", "public"), [("https", "https"), ("wss", "https"), ("ws", "http"), ("HTTP", "http")]
)
def test_the_webhook_is_checked_against_the_scheme_the_proxy_names(forwarded: str, public: str) -> None:
    params = call_params("CA" + "a" * 32)
    headers = {
        "X-Forwarded-Proto": forwarded,
        "X-Twilio-Signature": signed(f"{public}://voice.test/twilio/voice", params),
    }
    with client() as http:
        response = http.post("/twilio/voice", data=params, headers=headers)
    assert response.status_code == 200, response.text
    assert f'url="{"wss" if public == "https" else "ws"}://voice.test/twilio/media"' in response.text


def test_an_unknown_forwarded_scheme_is_refused_with_a_log_line_not_a_500(
    caplog_json: Callable[[], list[dict[str, Any]]],
) -> None:
    params = call_params("CA" + "b" * 32)
    with client() as http:
        response = http.post("/twilio/voice", data=params, headers={"X-Forwarded-Proto": "ftp"})
        assert response.status_code == 403
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            http.websocket_connect("/twilio/media", headers={"X-Forwarded-Proto": "ftp"}),
        ):
            pass
    assert closed.value.code == 1008
    refusals = [line for line in caplog_json() if line["event"] == "request_refused"]
    assert len(refusals) == 2 and all(line["value"] == "ftp" for line in refusals)
    assert not [line for line in caplog_json() if line["level"] == "error"]
