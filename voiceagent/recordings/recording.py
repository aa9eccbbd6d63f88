"""Call recordings (``VOICEAGENT_RECORDINGS=on``): one stereo WAV per call, 8 kHz, 16-bit, the caller on
the left and the agent on the right, on the call's timeline as the caller heard it.

The taps sit on the caller's transport (``RecordingTransport``, around any ``Transport``), where audio
crosses the wire:

* the caller's audio, every frame Twilio sends (it sends silence too, every 20 ms), *is* the timeline:
  sample ``n`` of the left channel is the ``n``-th caller byte;
* agent audio sent to Twilio is played right after whatever Twilio still has queued, or at once if
  nothing is: each chunk is placed at ``max(end of queued agent audio, caller position now)``;
* a ``clear`` drops everything queued past the caller's position: cleared audio was never heard, so it
  is not in the recording (nor is agent audio still queued when the call ends).

Audio is decoded from μ-law with ``audioop`` (stdlib on 3.11 and 3.12; the ``audioop-lts`` package
from 3.13). A second of audio at a time is finished and handed to one writer thread, which appends it
and rewrites the WAV header's sizes, so a file is valid up to its last second even after ``kill -9``.
Files are created ``0600``: a recording is as private as a call.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.11/3.12 warn that audioop leaves the stdlib
    import audioop

from voiceagent.logs import CallLog

__all__ = ["CallRecording", "RecordingFiles", "wav_header"]

RATE = 8000
CHANNELS = 2
SAMPLE_BYTES = 2
FLUSH_SAMPLES = RATE  # a second of the timeline per write
ULAW_SILENCE = b"\xff"
HEADER_BYTES = 44


def wav_header(data_bytes: int) -> bytes:
    """A 44-byte PCM WAV header for ``data_bytes`` of stereo 16-bit 8 kHz audio."""
    block = CHANNELS * SAMPLE_BYTES
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, SAMPLE_BYTES * 8)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class RecordingFiles:
    """The one thread that writes recordings: ``open``, ``append`` and ``close`` are queued, never wait.

    Each append writes the samples and then rewrites the header's sizes in place (``pwrite``: no new disk
    blocks needed), so the header always says what the file holds. A write that fails — a full disk —
    leaves the file cut back to its last whole append, with a header that says so; the recording stops
    there, ``on_incomplete(path, error)`` is told once (the recorder logs it once, counts it and marks the
    call), and nothing more is written to that file."""

    def __init__(
        self, directory: str | os.PathLike[str], *, on_incomplete: Callable[[Path, str], None] | None = None
    ) -> None:
        self.directory = Path(directory)
        self._queue: queue.SimpleQueue[tuple[str, Path, bytes] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._files: dict[Path, int] = {}  # path -> open file descriptor
        self._sizes: dict[Path, int] = {}  # path -> sample bytes written whole
        self._given_up: set[Path] = set()
        self._on_incomplete = on_incomplete
        self._log = CallLog()

    def start(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # as private as the calls in it
        self._thread = threading.Thread(target=self._run, name="voiceagent-recordings", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def put(self, op: str, path: Path, data: bytes = b"") -> None:
        self._queue.put((op, path, data))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                for descriptor in self._files.values():
                    os.close(descriptor)
                self._files.clear()
                return
            op, path, data = item
            try:
                self._do(op, path, data)
            except OSError as exc:
                self._give_up(path, exc)

    def _do(self, op: str, path: Path, data: bytes) -> None:
        if op == "open":
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._files[path], self._sizes[path] = descriptor, 0
            _write_all(descriptor, wav_header(0))
        elif op == "append" and path in self._files and path not in self._given_up:
            descriptor = self._files[path]
            _write_all(descriptor, data)
            self._sizes[path] += len(data)
            os.pwrite(descriptor, wav_header(self._sizes[path]), 0)  # valid up to here, whatever happens next
        elif op == "close" and path in self._files:
            os.close(self._files.pop(path))
            self._sizes.pop(path, None)
            self._given_up.discard(path)

    def _give_up(self, path: Path, exc: OSError) -> None:
        """Cut the file back to what its header says, stop writing it, say so once."""
        descriptor = self._files.get(path)
        if descriptor is None or path in self._given_up:
            return
        self._given_up.add(path)
        size = self._sizes.get(path, 0)
        try:
            os.ftruncate(descriptor, HEADER_BYTES + size)  # partly written samples out
            os.pwrite(descriptor, wav_header(size), 0)
        except OSError:
            pass  # the header already says ``size``: it was rewritten after the last whole append
        error = exc.strerror or type(exc).__name__
        self._log.error("recording_incomplete", file=path.name, seconds=round(size / (RATE * 4), 1), error=error)
        if self._on_incomplete is not None:
            self._on_incomplete(path, error)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


class CallRecording:
    """The two tracks of one call, aligned on the caller's timeline (one μ-law byte = one sample)."""

    def __init__(self, path: Path, files: RecordingFiles) -> None:
        self.path = path
        self._files = files
        self._caller = bytearray()  # caller samples not yet written, from ``_written``
        self._agent = bytearray()  # agent samples placed on the timeline, from ``_written``
        self._written = 0  # timeline samples already handed to the writer
        self._caller_at = 0  # the timeline's "now": caller samples received
        self._agent_until = 0  # where queued agent audio ends on the timeline
        self.finished = False
        files.put("open", path)

    def caller_audio(self, ulaw: bytes) -> None:
        if self.finished:
            return
        self._caller += ulaw
        self._caller_at += len(ulaw)
        if self._caller_at - self._written >= FLUSH_SAMPLES:
            self._flush(self._caller_at)

    def agent_audio(self, ulaw: bytes) -> None:
        if self.finished:
            return
        start = max(self._agent_until, self._caller_at)  # after what is queued, or now
        gap = start - self._written - len(self._agent)  # >= 0: the buffer never reaches past ``start``
        self._agent += ULAW_SILENCE * gap + ulaw
        self._agent_until = start + len(ulaw)

    def cleared(self) -> None:
        """Twilio drops what it has not played: nothing past the caller's position was heard."""
        if self._agent_until > self._caller_at:
            del self._agent[self._caller_at - self._written :]
            self._agent_until = self._caller_at

    def finish(self) -> None:
        """The call is over: write up to the caller's last frame (agent audio still queued was not heard)."""
        if self.finished:
            return
        self._flush(self._caller_at)
        self.finished = True
        self._files.put("close", self.path)

    def _flush(self, until: int) -> None:
        count = until - self._written
        if count <= 0:
            return
        caller = bytes(self._caller[:count])
        agent = bytes(self._agent[:count])
        if len(agent) < count:
            agent += ULAW_SILENCE * (count - len(agent))
        del self._caller[:count]
        del self._agent[:count]
        self._written = until
        left = audioop.tostereo(audioop.ulaw2lin(caller, SAMPLE_BYTES), SAMPLE_BYTES, 1, 0)
        right = audioop.tostereo(audioop.ulaw2lin(agent, SAMPLE_BYTES), SAMPLE_BYTES, 0, 1)
        self._files.put("append", self.path, audioop.add(left, right, SAMPLE_BYTES))
