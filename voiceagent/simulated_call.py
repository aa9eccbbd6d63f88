"""A simulated phone call against a running voiceagent: what ``voiceagent demo`` and ``voiceagent call``
share.

* ``read_wav_as_ulaw``: any common WAV file (PCM 8/16/24/32-bit, μ-law or A-law; any rate; mono or
  stereo) as the 8 kHz μ-law a Twilio Media Stream carries.
* ``write_wav``: μ-law 8 kHz as a 16-bit PCM WAV file any player opens.
* ``HeardAudio``: follows a ``FakeTwilioCaller`` tick by tick and lays what it played on the call's
  timeline, silence where the agent said nothing, so the file sounds like the call did.

Audio conversion uses the standard library's ``audioop`` (on Python ≥ 3.13 the ``audioop-lts`` package
provides the same module). Nothing here decodes audio on a call's path: the service itself never does.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import struct
import sys
import warnings
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():
    # Deprecated in 3.11 and 3.12 (removed in 3.13, where the audioop-lts package provides it): the
    # warning says nothing a user of this module can act on.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from voiceagent.wav import ALAW, PCM, ULAW, parse_wav
from voiceagent.wav import WavError as WavError  # what `voiceagent call` catches

if TYPE_CHECKING:
    from voiceagent.testing import FakeTwilioCaller


RATE = 8000
BYTES_PER_MS = 8  # μ-law, 8 kHz, mono
FRAME_BYTES = 160  # one 20 ms Twilio media frame
SILENCE = 0xFF  # μ-law code for zero amplitude

TESTING_EXTRA_HINT = "pip install 'voiceagent[testing]'  (from a clone: pip install -e '.[testing]')"


# ---------------------------------------------------------------- reading and writing WAV files


def wav_to_ulaw(data: bytes) -> bytes:
    """The audio of a WAV file as μ-law, 8 kHz, mono (stereo is mixed down; other channels beyond the
    first are dropped)."""
    fmt, samples = parse_wav(data)
    if fmt.channels < 1 or fmt.rate < 1000 or fmt.rate > 384_000:
        raise WavError(f"unsupported WAV layout: {fmt.describe()}")
    if fmt.tag == PCM and fmt.bits in (8, 16, 24, 32):
        width = fmt.bits // 8
        if width == 1:
            samples = audioop.bias(samples, 1, -128)  # WAV stores 8-bit samples unsigned
    elif fmt.tag in (ULAW, ALAW) and fmt.bits == 8:
        width = 1
    else:
        raise WavError(f"unsupported WAV encoding: {fmt.describe()} (use PCM 8/16/24/32-bit, μ-law or A-law)")
    samples = samples[: len(samples) - len(samples) % (width * fmt.channels)]
    if fmt.tag == ULAW:
        linear = audioop.ulaw2lin(samples, 2)
    elif fmt.tag == ALAW:
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


# ---------------------------------------------------------------- voiceagent call


@dataclass
class CallReport:
    """What a simulated call found: ``ok`` when the agent answered the question."""

    ok: bool = False
    problem: str | None = None
    heard_bytes: int = 0
    answer_bytes: int = 0  # heard after the question started
    clears: int = 0
    marks_echoed: int = 0
    call_seconds: float = 0.0
    out: Path | None = None


async def place_call(
    url: str,
    *,
    auth_token: str | None,
    question: bytes,
    question_name: str = "the question",
    out: str | Path = "heard.wav",
    speed: float = 1.0,
    greeting_wait: float = 6.0,
    quiet: float = 2.0,
    timeout: float = 90.0,
    stream: Any = None,
) -> CallReport:
    """Call the service at ``url`` as Twilio would, say ``question`` (μ-law) after the greeting (if any:
    at most ``greeting_wait`` seconds of waiting for it), listen until the agent has been quiet for
    ``quiet`` seconds after answering, hang up and write what was heard to ``out``. ``timeout``: wall
    seconds for the whole call. Needs the ``testing`` extra (``FakeTwilioCaller``)."""
    import httpx

    from voiceagent.testing import FakeTwilioCaller

    printer = Printer(stream)
    report = CallReport()
    heard = HeardAudio()
    caller = FakeTwilioCaller(url, auth_token=auth_token, speed=speed)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    printer.line(f"Calling {caller.base_url}{caller.voice_path} as Twilio would (CallSid {caller.call_sid}) ...")
    async with caller:
        try:
            dialled = await asyncio.wait_for(caller.dial(), timeout)
        except (httpx.HTTPError, OSError) as exc:
            report.problem = f"cannot reach {caller.base_url}: {type(exc).__name__}: {exc} (is the service running?)"
            return report
        if not dialled:
            report.problem = _explain_refusal(caller.refusal or "refused", caller.http_status)
            return report
        printer.line(f"  the webhook answered {caller.http_status} with a <Connect><Stream>; the Media Stream is open")
        monitor = _CallMonitor(caller, heard, printer)
        watcher = asyncio.create_task(monitor.run())
        try:
            await _listen(caller, heard, greeting_wait * 1000, min(deadline, loop.time() + greeting_wait / speed + 30))
            if caller.streaming:
                if heard.heard_bytes:
                    printer.line(f"  greeting heard ({heard.heard_bytes / BYTES_PER_MS / 1000:.1f} s)")
                before = heard.heard_bytes
                printer.line(f"  saying {question_name} ({len(question) / BYTES_PER_MS / 1000:.1f} s) ...")
                await asyncio.wait_for(caller.say(question), max(0.1, deadline - loop.time()))
                await _answered(caller, heard, before, quiet * 1000, deadline)
                report.answer_bytes = heard.heard_bytes - before
            await caller.hangup()
        except TimeoutError:
            report.problem = f"the call did not finish within {timeout:g} s"
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            heard.observe(caller)
    report.heard_bytes = heard.heard_bytes
    report.clears = len(caller.clears)
    report.marks_echoed = len(caller.marks_echoed)
    report.call_seconds = caller.media_ms / 1000
    report.out = write_wav(out, heard.track())
    if caller.closed_by_server and report.problem is None and not report.answer_bytes:
        report.problem = f"the service ended the call (WebSocket close code {caller.close_code})"
    if report.problem is None and not report.answer_bytes:
        report.problem = "the agent did not answer the question"
    report.ok = report.problem is None
    printer.line(
        f"  call over after {report.call_seconds:.1f} s: heard {report.heard_bytes / BYTES_PER_MS / 1000:.1f} s of "
        f"the agent ({report.heard_bytes:,} bytes; {report.answer_bytes:,} after the question), "
        f"{report.clears} clear(s), {report.marks_echoed} mark(s) echoed"
    )
    printer.line(f"  what the caller heard: {report.out}")
    for violation in caller.violations:
        printer.line(f"  Twilio would have complained: {violation}")
    return report


def _explain_refusal(refusal: str, status: int | None) -> str:
    if status == 403:
        return (
            f"{refusal}: the signature was refused. The service checks X-Twilio-Signature against its "
            "PUBLIC_BASE_URL: call the URL it names (--url), with the same TWILIO_AUTH_TOKEN as the service"
        )
    return refusal


async def _listen(caller: FakeTwilioCaller, heard: HeardAudio, greeting_wait_ms: float, deadline: float) -> None:
    """Until the greeting is over (heard, then a second of quiet), or none came in ``greeting_wait_ms``."""

    def done() -> bool:
        heard.observe(caller)
        if not caller.streaming:
            return True
        if heard.heard_bytes:
            return heard.quiet_ms() >= 1000 and not caller.pending_marks
        return caller.media_ms >= greeting_wait_ms

    await _wait(caller, done, deadline)


async def _answered(caller: FakeTwilioCaller, heard: HeardAudio, before: int, quiet_ms: float, deadline: float) -> None:
    """Until the agent has said something after ``before`` bytes and then been quiet for ``quiet_ms``."""

    def done() -> bool:
        heard.observe(caller)
        if not caller.streaming:
            return True
        return heard.heard_bytes > before and heard.quiet_ms() >= quiet_ms and not caller.pending_marks

    await _wait(caller, done, deadline)


async def _wait(caller: FakeTwilioCaller, done: Callable[[], bool], deadline: float) -> None:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise TimeoutError
    try:
        await caller.wait_until(done, timeout=remaining)
    except AssertionError:
        raise TimeoutError from None


class _CallMonitor:
    """Prints what the caller side can see as it happens: the agent starting and stopping, clears, the
    stream closing; and a progress line (elapsed, bytes heard)."""

    def __init__(self, caller: FakeTwilioCaller, heard: HeardAudio, printer: Printer) -> None:
        self.caller, self.heard, self.printer = caller, heard, printer
        self._timeline_seen = len(caller.timeline)
        self._speaking = False
        self._spoken_from = 0
        self._next_progress_ms = 5000

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.look()

    def look(self) -> None:
        caller, heard, at = self.caller, self.heard, f"{self.caller.media_ms / 1000:6.1f}s"
        heard.observe(caller)
        for _ms, kind, detail in caller.timeline[self._timeline_seen :]:
            if kind == "clear":
                self.printer.line(f"{at}  the service cleared playback (the caller talked over the agent): {detail}")
            elif kind == "closed":
                self.printer.line(f"{at}  the stream closed ({detail})")
        self._timeline_seen = len(caller.timeline)
        if not self._speaking and heard.quiet_ms() == 0 and heard.heard_bytes > self._spoken_from:
            self._speaking = True
            self.printer.line(f"{at}  the agent speaks ...")
        elif self._speaking and heard.quiet_ms() >= 700:
            self._speaking = False
            said = (heard.heard_bytes - self._spoken_from) / BYTES_PER_MS / 1000
            self._spoken_from = heard.heard_bytes
            self.printer.line(f"{at}  ... the agent stops ({said:.1f} s heard)")
        progress = (
            f"{at}  said {len(caller.sent_audio) / BYTES_PER_MS / 1000:.1f} s, heard {heard.heard_bytes:,} bytes "
            f"({heard.heard_bytes / BYTES_PER_MS / 1000:.1f} s), {len(caller.clears)} clear(s)"
        )
        if self.printer.tty:
            self.printer.status(progress)
        elif caller.media_ms >= self._next_progress_ms:
            self._next_progress_ms += 5000
            self.printer.line(progress)
