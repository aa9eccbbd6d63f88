"""A full disk under recordings: the file stops at its last whole second, with a header that says so;
the failure is told once, not once per call-second."""

from __future__ import annotations

import errno
import os
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voiceagent.recordings import recording as recording_module
from voiceagent.recordings.recording import HEADER_BYTES, RecordingFiles

SECOND = 8000 * 4  # stereo 16-bit at 8 kHz


def test_a_full_disk_leaves_a_consistent_file_and_one_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    real_write_all = recording_module._write_all
    room = {"bytes": HEADER_BYTES + 3 * SECOND + SECOND // 2}  # three seconds and a half fit

    def full_disk(descriptor: int, data: bytes) -> None:
        fits = min(len(data), room["bytes"])
        real_write_all(descriptor, data[:fits])  # a partial write, as a disk filling up gives
        room["bytes"] -= fits
        if fits < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(recording_module, "_write_all", full_disk)
    told: list[tuple[str, str]] = []
    files = RecordingFiles(tmp_path, on_incomplete=lambda path, error: told.append((path.name, error)))
    files.start()
    path = tmp_path / "CA1.wav"
    files.put("open", path)
    for second in range(12):  # a 12 s call
        files.put("append", path, bytes([second]) * SECOND)
    files.put("close", path)
    files.stop()

    assert told == [("CA1.wav", os.strerror(errno.ENOSPC))]
    assert [line["event"] for line in caplog_json()].count("recording_incomplete") == 1
    assert path.stat().st_size == HEADER_BYTES + 3 * SECOND  # cut back to the last whole second
    with wave.open(str(path)) as wav:
        assert wav.getnframes() * 4 == 3 * SECOND  # and the header says exactly that
        assert wav.readframes(wav.getnframes())[-1:] == bytes([2])
