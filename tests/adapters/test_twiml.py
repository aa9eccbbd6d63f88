"""The TwiML documents: well-formed, Twilio's rules (wss, no query string), and the examples in
``twiml/`` kept identical to what the builders produce."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from voiceagent.config import BUSY_MESSAGE, UNAVAILABLE_MESSAGE
from voiceagent.twilio import twiml

EXAMPLES = Path(__file__).resolve().parents[2] / "twiml"
BASE = "https://voice.example.com"


def examples() -> dict[str, str]:
    return {
        "connect.xml": twiml.connect(
            BASE, {"token": "1767225600.EXAMPLE-TOKEN", "from": "+15551234567", "to": "+15557654321"}
        ),
        "busy.xml": twiml.say_and_hang_up(BUSY_MESSAGE),
        "unavailable.xml": twiml.say_and_hang_up(UNAVAILABLE_MESSAGE),
        "hangup.xml": twiml.say_and_hang_up(""),
    }


@pytest.mark.parametrize("name", sorted(examples()))
def test_examples_in_the_repo_match_the_builders(name):
    assert (EXAMPLES / name).read_text(encoding="utf-8").strip() == examples()[name].strip()


def child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    assert found is not None, f"no <{tag}> in <{parent.tag}>"
    return found


def test_connect_streams_to_wss_without_a_query_string():
    root = ET.fromstring(twiml.connect(BASE + "/", {"token": "t", "from": "+1"}))
    connect = child(root, "Connect")
    stream = child(connect, "Stream")
    assert stream.get("url") == "wss://voice.example.com/twilio/media"
    assert "?" not in stream.get("url", "")
    assert connect.get("action") == "https://voice.example.com/twilio/stream-ended"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"token": "t", "from": "+1"}


def test_local_http_base_maps_to_ws_and_keeps_the_port_and_path():
    assert twiml.stream_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/twilio/media"
    assert twiml.stream_url("https://example.com/agent/") == "wss://example.com/agent/twilio/media"


def test_say_and_hang_up_escapes_text():
    root = ET.fromstring(twiml.say_and_hang_up("Fish & chips <today>"))
    assert child(root, "Say").text == "Fish & chips <today>" and root.find("Hangup") is not None


def test_the_stream_may_name_its_instance_and_report_its_events_while_the_action_stays_on_the_line():
    root = ET.fromstring(
        twiml.connect(BASE, {"token": "t"}, stream_base=BASE + "/instances/pod-0:8080", status_callback=True)
    )
    connect = child(root, "Connect")
    stream = child(connect, "Stream")
    assert stream.get("url") == "wss://voice.example.com/instances/pod-0:8080/twilio/media"
    assert connect.get("action") == "https://voice.example.com/twilio/stream-ended"
    assert stream.get("statusCallback") == "https://voice.example.com/twilio/stream-status"
    assert stream.get("statusCallbackMethod") == "POST"
    assert child(ET.fromstring(twiml.connect(BASE, {})), "Connect").find("Stream").get("statusCallback") is None  # type: ignore[union-attr]
