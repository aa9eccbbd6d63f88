"""Where recordings go: beside the SQLite file by default (never the working directory, which in the
Docker image is root-owned), named with PostgreSQL, and a folder that cannot be made stops the start."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from voiceagent.recordings import RecordingFiles
from voiceagent.store.settings import RecordsSettings
from voiceagent.variables import ConfigError


def test_recordings_default_to_a_folder_beside_the_sqlite_file(tmp_path: Path) -> None:
    records = RecordsSettings.from_env({"VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'calls.db'}"})
    assert records.recordings_dir == str(tmp_path / "data" / "recordings")


def test_with_postgresql_the_folder_must_be_named() -> None:
    env = {"VOICEAGENT_DATABASE_URL": "postgresql://voice:pw@db/voice", "VOICEAGENT_RECORDINGS": "on"}
    with pytest.raises(ConfigError) as refused:
        RecordsSettings.from_env(env)
    assert "VOICEAGENT_RECORDINGS_DIR must be set" in str(refused.value) and "pw" not in str(refused.value)


def test_a_folder_that_cannot_be_made_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"VOICEAGENT_RECORDINGS": "on", "VOICEAGENT_RECORDINGS_DIR": str(blocker / "recordings")}
    with pytest.raises(ConfigError, match="VOICEAGENT_RECORDINGS_DIR=.*cannot be created"):
        RecordsSettings.from_env(env)


def test_the_recordings_folder_is_private(tmp_path: Path) -> None:
    files = RecordingFiles(tmp_path / "new" / "recordings")
    files.start()
    files.stop()
    assert stat.S_IMODE((tmp_path / "new" / "recordings").stat().st_mode) == 0o700
