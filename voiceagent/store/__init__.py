"""Call records that last: one row per call and its transcript, in SQLite (default) or PostgreSQL.

* ``RecordsSettings``: the ``VOICEAGENT_*`` variables of records, the operator API and the webhook.
* ``CallStore``: the store (a writer thread fed by a queue; reads for the API and the CLI).
* ``voiceagent.store.recorder.Recorder``: the service's hooks, turned into records, metrics and events.
"""

from __future__ import annotations

from voiceagent.store.backend import StoreError
from voiceagent.store.records import CallRecord, LineRecord
from voiceagent.store.settings import RecordsSettings
from voiceagent.store.store import PROCESS_ENDED, CallPage, CallStore

__all__ = ["PROCESS_ENDED", "CallPage", "CallRecord", "CallStore", "LineRecord", "RecordsSettings", "StoreError"]
