"""Who gets in: Twilio request signatures and per-call stream tokens.

- Webhooks and the media-stream upgrade carry ``X-Twilio-Signature``; we check it with the twilio SDK's
  ``RequestValidator`` against the *public* URL Twilio used (docs/protocol.md §1, "Signatures").
- The webhook hands the stream a short-lived token bound to the CallSid (an HMAC over the CallSid and an
  expiry, in a ``<Parameter>``); the bridge checks it against ``start.callSid`` before anything else, so
  a stream URL found on the internet is worth nothing without a fresh, signed webhook for that call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

TOKEN_PARAMETER = "token"
TOKEN_TTL_SECONDS = 60
_TOKEN = re.compile(r"(?P<expiry>[0-9]{1,12})\.(?P<mac>[A-Za-z0-9_-]{43})", re.ASCII)


class SignatureChecker:
    """Validates ``X-Twilio-Signature``; with no auth token (explicit insecure opt-out) accepts all."""

    def __init__(self, auth_token: str | None) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None

    @property
    def enforcing(self) -> bool:
        return self._validator is not None

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        if self._validator is None:
            return True
        if not signature:
            return False
        return bool(self._validator.validate(url, dict(params), signature))


class StreamTokens:
    """Issue and check the per-call token (``"<expiry>.<mac>"``).

    The key derives from the Twilio auth token, so every process behind a load balancer agrees; without
    one (insecure local mode) a random per-process key is used."""

    def __init__(self, auth_token: str | None, ttl_seconds: float = TOKEN_TTL_SECONDS) -> None:
        seed = auth_token.encode() if auth_token else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"voiceagent stream token v1", hashlib.sha256).digest()
        self.ttl = ttl_seconds

    def _mac(self, call_sid: str, expiry: int) -> str:
        digest = hmac.new(self._key, f"{call_sid}|{expiry}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, call_sid: str, now: float) -> str:
        expiry = int(now + self.ttl)
        return f"{expiry}.{self._mac(call_sid, expiry)}"

    def check(self, token: str | None, call_sid: str, now: float) -> str | None:
        """None when the token is good for this call now; otherwise why not (safe to log). Never raises,
        whatever the token holds (non-ASCII digits, thousands of them, odd characters)."""
        match = _TOKEN.fullmatch(token or "")
        if match is None:
            return "missing or malformed stream token"
        expiry, mac = int(match["expiry"]), match["mac"]
        if not hmac.compare_digest(mac, self._mac(call_sid, expiry)):
            return "stream token does not match this call"
        if expiry < now:
            return "stream token expired"
        return None
