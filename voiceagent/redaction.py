"""Secrets kept out of what we send and store, in every form a value can take on its way back to us.

A tool backend that echoes its API key may return it as it is, JSON-escaped (``\\/``, ``\\uXXXX``: PHP and
others escape by default), URL-encoded, or base64-encoded (a Basic credential). Each of those forms is
redacted; so is the text a JSON body turns into once parsed. What is finally sent to the model, stored,
logged or posted is redacted, not only what arrived.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "Redactor", "redact", "secret_forms"]

REDACTED = "[redacted]"


def _json_escaped(secret: str) -> set[str]:
    """The secret as a JSON string's inside, the ways encoders write it: plain, ASCII-only, ``/`` as ``\\/``,
    and every character as ``\\uXXXX``."""
    plain = json.dumps(secret, ensure_ascii=False)[1:-1]
    ascii_only = json.dumps(secret)[1:-1]
    every = "".join(f"\\u{ord(char):04x}" for char in secret if ord(char) <= 0xFFFF)
    forms = {plain, ascii_only, every, every.upper().replace("\\U", "\\u")}
    return forms | {form.replace("/", "\\/") for form in forms}


def _base64_forms(secret: str) -> set[str]:
    raw = secret.encode()
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return {standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")}


def secret_forms(secret: str) -> frozenset[str]:
    """Every form of ``secret`` to redact: as it is, JSON-escaped, URL-encoded and base64-encoded."""
    if not secret:
        return frozenset()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms |= _json_escaped(secret) | _base64_forms(secret)
    return frozenset(form for form in forms if form)


class Redactor:
    """Redacts a fixed set of secrets in all their forms (worked out once, here)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            forms |= secret_forms(secret)
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: no part of one survives

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret in ``secrets`` replaced."""
    return Redactor(secrets)(text)
