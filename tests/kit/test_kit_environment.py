"""The test kit builds the app from the mapping a test passes, never from the developer's shell: one that
loaded the real voiceagent.env must not make a test write to the real store or post to the real webhook."""

from __future__ import annotations

import pytest

from voiceagent.testing import app_environment, serve_app

HOSTILE = {
    "VOICEAGENT_DATABASE_URL": "postgresql://prod:hunter2@db.example.com:5432/calls",
    "VOICEAGENT_CALL_ENDED_WEBHOOK": "https://hooks.example.com/real",
    "VOICEAGENT_WEBHOOK_SECRET": "s" * 32,
    "VOICEAGENT_RECORDINGS": "yes",
    "VOICEAGENT_API_TOKEN": "a" * 32,
    "VOICEAGENT_MAX_CALLS": "1",
    "VOICEAGENT_MAXCALLS": "5",  # a misspelling in the shell is not the test's problem either
}


async def test_serve_app_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    async with serve_app(app_environment("http://127.0.0.1:9")) as app:
        records = app.service.records
        assert records is not None and records.backend == "sqlite" and "voiceagent-test-" in records.sqlite_path
        assert records.call_ended_webhook is None and not records.recordings and records.api_token is None
        assert app.settings.max_calls == 50
