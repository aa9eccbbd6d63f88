"""The mark of an eval call (``voiceagent eval``): made only by whoever holds the Twilio auth token.

The eval runner places its calls as Twilio would (``voiceagent.testing.fake_twilio``), signing each request
with the auth token, and adds one POST parameter Twilio never sends, ``VoiceagentEval``, whose value is an
HMAC of the CallSid under a key derived from the auth token. Twilio's signature covers every POST parameter
and the HMAC is bound to the call, so a caller can neither mark a real call nor unmark an eval one, and a
mark seen on one call is worth nothing on another. The service passes the same value on in the stream's
``<Parameter name="eval">``, so that a stream claimed on another instance of the line is marked too.
Without an auth token (the insecure local mode) nothing proves who sent a mark: none is honoured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["EVAL", "EVAL_PARAMETER", "LIVE", "STREAM_PARAMETER", "EvalMarks"]

EVAL_PARAMETER = "VoiceagentEval"  # on the webhooks the eval runner signs
STREAM_PARAMETER = "eval"  # the <Stream>'s <Parameter>, put there by the service only
LIVE, EVAL = "live", "eval"  # a call's kind, as recorded


class EvalMarks:
    """Make and check the mark; ``auth_token=None``: no mark is ever valid."""

    def __init__(self, auth_token: str | None) -> None:
        seed = b"voiceagent eval mark v1"  # another key than the stream tokens', from the same secret
        self._key = hmac.new(auth_token.encode(), seed, hashlib.sha256).digest() if auth_token else None

    def sign(self, call_sid: str) -> str:
        if self._key is None:
            raise ValueError("an eval mark needs the Twilio auth token")
        digest = hmac.new(self._key, call_sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def valid(self, call_sid: str, mark: str | None) -> bool:
        if self._key is None or not mark:
            return False
        return hmac.compare_digest(mark.encode(), self.sign(call_sid).encode())

    def kind(self, call_sid: str, params: Mapping[str, str], name: str = EVAL_PARAMETER) -> str:
        """``eval`` when ``params`` carry a valid mark for this call under ``name``; else ``live``."""
        return EVAL if self.valid(call_sid, params.get(name)) else LIVE

    def forged(self, call_sid: str, params: Mapping[str, str], name: str = EVAL_PARAMETER) -> bool:
        """A mark is there, and it is not this call's (worth a log line: someone tried)."""
        return bool(params.get(name)) and not self.valid(call_sid, params.get(name))

    def stream_parameters(self, call_sid: str, kind: str) -> dict[str, str]:
        """What the call's ``<Stream>`` carries for its kind (nothing for a live call)."""
        return {STREAM_PARAMETER: self.sign(call_sid)} if kind == EVAL else {}
