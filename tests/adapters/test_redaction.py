"""Secrets in every form they come back in, and text made valid at the boundary."""

from __future__ import annotations

import base64
import io
import json
import logging
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from voiceagent.logs import CallLog, configure_logging
from voiceagent.redaction import REDACTED, redact, secret_forms
from voiceagent.text import valid_text

SECRET = "sk/live+Key=0123456789abcdef"


def test_every_encoding_of_a_secret_is_redacted() -> None:
    forms = [
        SECRET,
        json.dumps(SECRET)[1:-1].replace("/", "\\/"),
        "".join(f"\\u{ord(c):04x}" for c in SECRET),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ]
    for form in forms:
        assert redact(f"before {form} after", [SECRET]) == f"before {REDACTED} after", form
    assert secret_forms("") == frozenset()


def test_the_log_scrubber_knows_the_encodings_too() -> None:
    stream = io.StringIO()
    configure_logging(secrets=[SECRET], stream=stream)
    CallLog("CA1").info(
        "tool_answer", body=f'{{"k": "{quote(SECRET, safe="")}"}}', b64=base64.b64encode(SECRET.encode()).decode()
    )
    logging.getLogger("voiceagent").handlers[0].flush()
    text = stream.getvalue()
    assert SECRET not in text and quote(SECRET, safe="") not in text and REDACTED in text


@given(st.text())
def test_valid_text_is_always_encodable_and_keeps_valid_text_as_it_is(text: str) -> None:
    made = valid_text(text)
    made.encode("utf-8")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assert "\ufffd" in made
    else:
        assert made is text
