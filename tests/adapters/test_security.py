"""Signatures (with the test vectors of docs/protocol.md, "## 1. Twilio Media Streams", "### Signatures") and
per-call stream tokens."""

from __future__ import annotations

from voiceagent.twilio.security import SignatureChecker, StreamTokens

CALL = "CA" + "0123456789abcdef" * 2
OTHER = "CA" + "f" * 32


def test_signature_vectors_from_the_protocol_notes():
    checker = SignatureChecker("12345")
    assert checker.valid("wss://example.com/media-stream", {}, "XFfwGS2Ev7f9qAP9MmRoMS7C724=")
    form = {"AccountSid": "AC1", "CallSid": "CA123", "From": "+15551234567", "To": "+15557654321"}
    assert checker.valid("https://example.com/voice", form, "1XwNQbCHPb83UC/WyViUg6mHmrw=")


def test_forged_or_missing_signatures_fail():
    checker = SignatureChecker("12345")
    form = {"CallSid": "CA123"}
    assert not checker.valid("https://example.com/voice", form, None)
    assert not checker.valid("https://example.com/voice", form, "")
    assert not checker.valid("https://example.com/voice", form, "1XwNQbCHPb83UC/WyViUg6mHmrw=")
    assert not checker.valid("wss://evil.example.com/media-stream", {}, "XFfwGS2Ev7f9qAP9MmRoMS7C724=")


def test_without_an_auth_token_nothing_is_enforced():
    checker = SignatureChecker(None)
    assert not checker.enforcing and checker.valid("https://x/voice", {}, None)


def test_a_token_is_good_for_its_call_until_it_expires():
    tokens = StreamTokens("secret", ttl_seconds=60)
    token = tokens.issue(CALL, now=1000.0)
    assert tokens.check(token, CALL, now=1000.0) is None
    assert tokens.check(token, CALL, now=1060.0) is None
    assert tokens.check(token, CALL, now=1061.0) == "stream token expired"


def test_a_token_for_another_call_or_tampered_is_refused():
    tokens = StreamTokens("secret")
    token = tokens.issue(CALL, now=1000.0)
    assert tokens.check(token, OTHER, now=1000.0) == "stream token does not match this call"
    expiry, mac = token.split(".")
    assert tokens.check(f"{int(expiry) + 3600}.{mac}", CALL, now=1000.0) == "stream token does not match this call"
    assert tokens.check(None, CALL, now=1000.0)
    assert tokens.check("garbage", CALL, now=1000.0)
    assert tokens.check("x.y", CALL, now=1000.0)


def test_tokens_agree_across_processes_sharing_the_auth_token():
    token = StreamTokens("secret").issue(CALL, now=1000.0)
    assert StreamTokens("secret").check(token, CALL, now=1000.0) is None
    assert StreamTokens("other").check(token, CALL, now=1000.0) is not None


def test_the_token_reveals_no_secret_and_fits_a_twiml_parameter():
    token = StreamTokens("supersecret-auth-token").issue(CALL, now=1000.0)
    assert "supersecret" not in token and CALL not in token and len(token) < 500
