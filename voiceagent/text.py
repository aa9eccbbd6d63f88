"""Text from outside, made valid before it goes anywhere.

A JSON string may carry a lone surrogate (``"\\ud800"``: a JavaScript backend that cut a string inside an
emoji); Python parses it into a ``str`` that cannot be encoded as UTF-8, and the first ``encode`` on the
send path fails (orjson refuses it, a database driver refuses it). Text that crosses into the service — a
tool's answer, an operator's line — is made valid UTF-8 here, once, at the boundary.
"""

from __future__ import annotations

__all__ = ["REPLACEMENT", "valid_text"]

REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD; valid text comes back as it is (the same object)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # a valid pair written as two surrogates joins up; a lone one becomes U+FFFD
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
