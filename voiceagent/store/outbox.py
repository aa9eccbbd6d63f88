"""The call-ended webhook's undelivered deliveries, kept in the store.

A delivery is written here when it is queued and deleted when the receiver has it (2xx) or refuses it
for good (another 4xx). What is left — deliveries pending at shutdown, or still failing when their retry
window ran out (the receiver down for longer than that) — is delivered again after a restart, and every
``RESUME_EVERY_SECONDS`` while the service runs. Receivers drop repeats by ``X-Voiceagent-Delivery``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from voiceagent.store.store import CallStore
from voiceagent.store.writer import Statement

__all__ = ["Kept", "WebhookOutbox"]

RESUME_EVERY_SECONDS = 300.0
RESUME_BATCH = 200


@dataclass(frozen=True, slots=True)
class Kept:
    delivery_id: str
    call_sid: str
    payload: dict[str, Any]


class WebhookOutbox:
    def __init__(self, store: CallStore) -> None:
        self._store = store

    def keep(self, delivery_id: str, call_sid: str, payload: dict[str, Any]) -> None:
        sql = "INSERT INTO webhook_outbox (delivery_id, call_sid, payload, created_at) VALUES (?, ?, ?, ?)"
        params = (delivery_id, call_sid, json.dumps(payload, ensure_ascii=False), time.time())
        self._store.writer.put(Statement(sql, params, "webhook kept"))

    def done(self, delivery_id: str) -> None:
        sql = "DELETE FROM webhook_outbox WHERE delivery_id = ?"
        self._store.writer.put(Statement(sql, (delivery_id,), "webhook done"))

    async def pending(self) -> list[Kept]:
        """The oldest undelivered deliveries (blocking read, on the store's own threads)."""
        rows = await self._store.read(self._pending)
        return [Kept(row["delivery_id"], row["call_sid"], json.loads(row["payload"])) for row in rows]

    def _pending(self) -> list[dict[str, Any]]:
        sql = f"SELECT delivery_id, call_sid, payload FROM webhook_outbox ORDER BY created_at LIMIT {RESUME_BATCH}"
        return self._store._query(sql)
