"""A simulated phone call against a running voiceagent: what ``voiceagent demo`` and ``voiceagent call``
share.

* ``read_wav_as_ulaw``: any common WAV file (PCM 8/16/24/32-bit, μ-law or A-law; any rate; mono or
  stereo) as the 8 kHz μ-law a Twilio Media Stream carries.
* ``write_wav``: μ-law 8 kHz as a 16-bit PCM WAV file any player opens.
* ``HeardAudio``: follows a ``FakeTwilioCaller`` tick by tick and lays what it played on the call's
  timeline, silence where the agent said nothing, so the file sounds like the call did.
* ``serve_on_loopback``: the real app under uvicorn on a free loopback port, with any transcript sink.

Audio conversion uses the standard library's ``audioop`` (on Python ≥ 3.13 the ``audioop-lts`` package
provides the same module). Nothing here decodes audio on a call's path: the service itself never does.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import socket
import struct
import sys
import time
import warnings
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():
    # Deprecated in 3.11 and 3.12 (removed in 3.13, where the audioop-lts package provides it): the
    # warning says nothing a user of this module can act on.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from voiceagent.config import Settings
    from voiceagent.testing import FakeTwilioCaller

RATE = 8000
BYTES_PER_MS = 8  # μ-law, 8 kHz, mono
FRAME_BYTES = 160  # one 20 ms Twilio media frame
SILENCE = 0xFF  # μ-law code for zero amplitude

_PCM, _ALAW, _ULAW, _EXTENSIBLE = 1, 6, 7, 0xFFFE
TESTING_EXTRA_HINT = "pip install 'voiceagent[testing]'  (from a clone: pip install -e '.[testing]')"


class WavError(ValueError):
    """A file that is not a WAV we can turn into phone audio; the message says what it is instead."""


# ---------------------------------------------------------------- reading and writing WAV files


@dataclass(frozen=True)
class WavFormat:
    tag: int  # 1 PCM, 6 A-law, 7 μ-law
    channels: int
    rate: int
    bits: int

    def describe(self) -> str:
        kind = {_PCM: f"{self.bits}-bit PCM", _ALAW: "A-law", _ULAW: "μ-law"}.get(self.tag, f"format {self.tag}")
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{kind}, {self.rate} Hz, {layout}"


def parse_wav(data: bytes) -> tuple[WavFormat, bytes]:
    """The format and the sample bytes of a RIFF/WAVE file (``wave`` reads only PCM, so the chunks are
    read here)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError("the WAV file's fmt chunk is truncated")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the tag
            fmt = WavFormat(tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the WAV file has no fmt chunk before its data")
            return fmt, body
        pos += 8 + size + (size & 1)
    raise WavError("the WAV file has no data chunk")


def wav_to_ulaw(data: bytes) -> bytes:
    """The audio of a WAV file as μ-law, 8 kHz, mono (stereo is mixed down; other channels beyond the
    first are dropped)."""
    fmt, samples = parse_wav(data)
    if fmt.channels < 1 or fmt.rate < 1000 or fmt.rate > 384_000:
        raise WavError(f"unsupported WAV layout: {fmt.describe()}")
    if fmt.tag == _PCM and fmt.bits in (8, 16, 24, 32):
        width = fmt.bits // 8
        if width == 1:
            samples = audioop.bias(samples, 1, -128)  # WAV stores 8-bit samples unsigned
    elif fmt.tag in (_ULAW, _ALAW) and fmt.bits == 8:
        width = 1
    else:
        raise WavError(f"unsupported WAV encoding: {fmt.describe()} (use PCM 8/16/24/32-bit, μ-law or A-law)")
    samples = samples[: len(samples) - len(samples) % (width * fmt.channels)]
    if fmt.tag == _ULAW:
        linear = audioop.ulaw2lin(samples, 2)
    elif fmt.tag == _ALAW:
        linear = audioop.alaw2lin(samples, 2)
    else:
        linear = audioop.lin2lin(samples, width, 2) if width != 2 else samples
    if fmt.channels == 2:
        linear = audioop.tomono(linear, 2, 0.5, 0.5)
    elif fmt.channels > 2:
        wide = array.array("h")
        wide.frombytes(linear)
        linear = wide[:: fmt.channels].tobytes()
    if fmt.rate != RATE:
        linear, _state = audioop.ratecv(linear, 2, 1, fmt.rate, RATE, None)
    return audioop.lin2ulaw(linear, 2)


def read_wav_as_ulaw(path: str | Path) -> bytes:
    """``wav_to_ulaw`` of a file; ``WavError`` (naming the file) if it cannot be read or converted."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from None
    try:
        return wav_to_ulaw(data)
    except (WavError, audioop.error, struct.error) as exc:
        raise WavError(f"{path}: {exc}") from None


def write_wav(path: str | Path, ulaw: bytes) -> Path:
    """Write μ-law 8 kHz mono as a 16-bit PCM WAV file (what every player opens); returns the path."""
    target = Path(path)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audioop.ulaw2lin(ulaw, 2))
    return target


def mix(*tracks: bytes) -> bytes:
    """μ-law tracks played at once (summed, clipped), as long as the longest."""
    length = max((len(track) for track in tracks), default=0)
    total = b"\x00" * (2 * length)
    for track in tracks:
        padded = track + bytes([SILENCE]) * (length - len(track))
        total = audioop.add(total, audioop.ulaw2lin(padded, 2), 2)
    return audioop.lin2ulaw(total, 2)


def peak_dbfs(ulaw: bytes) -> float:
    """The loudest 20 ms of μ-law audio in dB relative to full scale (silence: -inf)."""
    loudest = 0
    for start in range(0, len(ulaw), FRAME_BYTES):
        loudest = max(loudest, audioop.rms(audioop.ulaw2lin(ulaw[start : start + FRAME_BYTES], 2), 2))
    return 20 * math.log10(loudest / 32768) if loudest else float("-inf")


# ---------------------------------------------------------------- what the caller heard, in time


@dataclass
class HeardAudio:
    """Follows a ``FakeTwilioCaller`` (``await heard.follow(caller)`` in a task) and keeps the agent's
    audio where it was played on the call's media clock; ``track()`` is then the whole call as the
    caller heard it, silence included. Also knows when the agent last made a sound (``quiet_ms``)."""

    _pieces: list[tuple[int, bytes]] = field(default_factory=list)  # (byte offset on the timeline, audio)
    _seen_played: int = 0
    _cursor: int = 0
    last_sound_ms: int = 0  # media clock when audio last played
    media_ms: int = 0

    @property
    def heard_bytes(self) -> int:
        return self._seen_played

    def quiet_ms(self) -> int:
        """How long (media clock) nothing has played."""
        return self.media_ms - self.last_sound_ms

    def observe(self, caller: FakeTwilioCaller) -> None:
        """Take what ``caller`` played since the last look (each tick plays at most one 20 ms frame, over
        the 20 ms that tick ends)."""
        media_ms, played = caller.media_ms, len(caller.played)
        self.media_ms = media_ms
        if played > self._seen_played:
            new = bytes(caller.played[self._seen_played : played])
            frames = -(-len(new) // FRAME_BYTES)
            start = max(self._cursor, media_ms * BYTES_PER_MS - frames * FRAME_BYTES)
            self._pieces.append((start, new))
            self._cursor = start + len(new)
            self._seen_played = played
            self.last_sound_ms = media_ms
        elif caller.buffered_bytes:
            self.last_sound_ms = media_ms

    async def follow(self, caller: FakeTwilioCaller, timeout: float = 3600.0) -> None:
        """Observe ``caller`` after every tick until its stream closes (or ``timeout`` seconds pass)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not caller.closed and loop.time() < deadline:
            with contextlib.suppress(AssertionError):  # a bounded wait that ran out: look anyway
                await caller.wait_until(self._changed(caller, caller.media_ms), timeout=1.0)
            self.observe(caller)
        self.observe(caller)

    @staticmethod
    def _changed(caller: FakeTwilioCaller, seen_ms: int) -> Callable[[], bool]:
        return lambda: caller.media_ms != seen_ms or caller.closed

    def track(self, length_ms: int | None = None) -> bytes:
        """The agent's audio on the call's timeline, μ-law, silence between."""
        end = max([self.media_ms * BYTES_PER_MS, self._cursor] + ([length_ms * BYTES_PER_MS] if length_ms else []))
        timeline = bytearray([SILENCE]) * end
        for start, audio in self._pieces:
            timeline[start : start + len(audio)] = audio
        return bytes(timeline)


# ---------------------------------------------------------------- the app on a loopback port


def free_loopback_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, ready to hand to uvicorn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_on_loopback(
    app: Starlette, settings: Settings, sock: socket.socket, *, startup_timeout: float = 15.0
) -> AsyncIterator[None]:
    """Serve ``app`` under uvicorn (the service's own configuration) on ``sock``, in this event loop."""
    import uvicorn

    from voiceagent.server import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, settings, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {startup_timeout:g} s")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=15)
        sock.close()


# ---------------------------------------------------------------- printing


class Printer:
    """Lines for a person at a terminal, flushed as they happen. ``status`` rewrites one progress line
    in place on a terminal and is skipped elsewhere (logs of CI runs stay readable)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._status_shown = False

    def line(self, text: str = "") -> None:
        self._clear_status()
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        if self.tty:
            print("\r\x1b[2K" + text, end="", file=self.stream, flush=True)
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            print("\r\x1b[2K", end="", file=self.stream, flush=True)
            self._status_shown = False


def missing_testing_extra(exc: ImportError) -> str:
    """What to tell someone whose install lacks the ``testing`` extra (the simulated caller and the
    fake model need numpy and openai)."""
    return f"this command needs the test kit's extra dependencies ({exc.name or exc}): {TESTING_EXTRA_HINT}"
