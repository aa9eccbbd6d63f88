"""Realtime ``error`` codes that are part of a normal call (PROTOCOLS.md §2): logged as warnings.

None of them ends a call. A session that is really gone closes its socket, and the driver reconnects.
"""

from __future__ import annotations

WARNING_ERROR_CODES = frozenset(
    {
        "response_cancel_not_active",  # a cancel raced the end of the response
        "conversation_already_has_active_response",
        "invalid_value",  # e.g. a truncate past the produced audio
        "item_truncate_invalid_item_id",
        "session_expired",  # the duration cap: the close that follows triggers the reconnect
    }
)
