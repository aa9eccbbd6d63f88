"""``voiceagent demo``: a whole phone call on this machine, with nothing to configure.

The real service runs on a loopback port, the bundled fake Realtime model (``FakeRealtimeServer``)
answers it, and a simulated Twilio caller (``FakeTwilioCaller``) places a signed call over the real
webhook and Media Stream protocol. The caller follows a short script: it hears the greeting, asks for a
table, talks over the long answer (a barge-in: the agent stops at once and the model is told how much
was heard), changes the booking and says goodbye, hears the agent's goodbye and hangs up.

The transcript is printed as it happens, through the app's own ``TranscriptSink`` and its ``barge_in``
log lines; the service's JSON log goes to a file. What the call sounded like (the agent as the caller
heard it, the caller's voice mixed in) is written to a WAV file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from websockets.asyncio.server import serve

from voiceagent.server import uvicorn_config
from voiceagent.simulated_call import (
    BYTES_PER_MS,
    HeardAudio,
    Printer,
    mix,
    write_wav,
)
from voiceagent.testing import (
    TEST_API_KEY,
    FakeRealtimeServer,
    FakeTwilioCaller,
    load_fixture,
    loopback_socket,
    serve_asgi,
    wait_until,
)
from voiceagent.testing.fake_realtime.server import MAX_MESSAGE_BYTES
from voiceagent.transcripts import FanoutSink, LogTranscriptSink, TranscriptLine

GREETING = "Thank you for calling the Riverside Bistro. How can I help you today?"
INSTRUCTIONS = "You take table bookings for the Riverside Bistro. Be brief and friendly."
WALL_LIMIT_SECONDS = 60.0
MODEL_LEAD = 4.0  # the fake model generates this much faster than the caller listens, as real ones do
CALLER_NUMBER = "+15551230000"
OUR_NUMBER = "+15557650000"


@dataclass
class DemoResult:
    """What happened: the transcript lines and barge-ins as printed, the WAV, and how long it took."""

    lines: list[TranscriptLine] = field(default_factory=list)
    barge_ins: list[int] = field(default_factory=list)  # heard_ms of each
    wav: Path | None = None
    heard_bytes: int = 0
    call_seconds: float = 0.0  # on the call's own (media) clock
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # protocol violations either fake saw


class _LiveTranscript:
    """The app's transcript sink for the demo: prints each finished utterance as it is recorded, and
    each ``barge_in`` log line of the service (a ``logging`` handler on the ``voiceagent`` logger)."""

    def __init__(self, printer: Printer, result: DemoResult, clock: Any) -> None:
        self.printer = printer
        self.result = result
        self.clock = clock  # () -> seconds on the call's clock

    def record(self, line: TranscriptLine) -> None:
        self.result.lines.append(line)
        who = {"agent": "Agent", "caller": "Caller", "tool": "Tool"}.get(line.role, line.role)
        text = line.text or "(nothing)"
        if line.interrupted:
            heard = f"{line.heard_ms / 1000:.1f} s" if line.heard_ms is not None else "part"
            text += f" ... [cut off: the caller heard {heard} of it]"
        self.printer.line(f"{self.clock():6.1f}s  {who:>6}: {text}")

    def barge_in(self, heard_ms: int) -> None:
        self.result.barge_ins.append(heard_ms)
        self.printer.line(
            f"{self.clock():6.1f}s  >> barge-in: the caller talked over the agent; Twilio's playback is cleared "
            f"and the model told the caller heard {heard_ms} ms of that answer"
        )


class _BargeInHandler(logging.Handler):
    def __init__(self, transcript: _LiveTranscript) -> None:
        super().__init__(logging.INFO)
        self.transcript = transcript

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None) or {}
        if record.getMessage() == "barge_in" and isinstance(fields.get("heard_ms"), int):
            self.transcript.barge_in(fields["heard_ms"])


def demo_environment(
    model_endpoint: str, model_key: str, auth_token: str, port: int, speed: float, store_dir: str | Path
) -> dict[str, str]:
    """The service's settings for the demo, built here: nothing is read from the environment. Call records
    go to a throwaway store in ``store_dir``; no webhook, no recordings, no API."""
    base_url = f"http://127.0.0.1:{port}"
    return {
        "VOICEAGENT_DATABASE_URL": f"sqlite:///{Path(store_dir).resolve() / 'demo.db'}",
        "AZURE_OPENAI_ENDPOINT": model_endpoint,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        "AZURE_OPENAI_API_KEY": model_key,
        "TWILIO_AUTH_TOKEN": auth_token,
        "PUBLIC_BASE_URL": base_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VOICEAGENT_GREETING": GREETING,
        "VOICEAGENT_INSTRUCTIONS": INSTRUCTIONS,
        # a faster-than-real-time caller is the demo's own choice, not an abuse to guard against
        "VOICEAGENT_CALLER_AUDIO_PACE": str(min(100.0, max(1.25, 2 * speed))),
    }


async def run_demo(
    *,
    out: str | Path = "demo-heard.wav",
    log_file: str | Path | None = None,
    speed: float = 1.0,
    stream: TextIO | None = None,
    wall_limit: float = WALL_LIMIT_SECONDS,
) -> DemoResult:
    """Play the scripted call and return what happened. ``speed``: how much faster than real time the
    caller talks and listens (1: a real call's pace); ``log_file``: where the service's JSON log goes
    (``None``: nowhere). Raises ``TimeoutError`` after ``wall_limit`` seconds.

    Needs the ``testing`` extra (the fakes use numpy and the ``openai`` package's event types)."""
    from voiceagent.app import create_app
    from voiceagent.config import load_settings
    from voiceagent.logs import LOGGER_NAME, configure_logging

    printer = Printer(stream)
    result = DemoResult()
    started = time.monotonic()
    model_key, auth_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    caller_box: list[FakeTwilioCaller] = []

    def call_clock() -> float:
        return caller_box[0].media_ms / 1000 if caller_box else 0.0

    transcript = _LiveTranscript(printer, result, call_clock)
    log_stream = _open_log(log_file)
    configure_logging(secrets=[model_key, auth_token], stream=log_stream)
    service_logger = logging.getLogger(LOGGER_NAME)
    barge_ins = _BargeInHandler(transcript)
    service_logger.addHandler(barge_ins)
    try:
        async with asyncio.timeout(wall_limit), contextlib.AsyncExitStack() as stack:
            async with FakeRealtimeServer(
                api_key=model_key, speed=MODEL_LEAD * speed, replies=("agent_reply_long", "agent_goodbye")
            ) as model:
                sock = loopback_socket()
                port = sock.getsockname()[1]
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="voiceagent-demo-"))
                settings = load_settings(demo_environment(model.endpoint, model_key, auth_token, port, speed, scratch))
                # every utterance on the terminal and, as the service logs it, in the JSON log
                app = create_app(settings, sink=FanoutSink(transcript, LogTranscriptSink()))
                async with serve_asgi(app, config=uvicorn_config(app, settings, lifespan="on"), sock=sock):
                    printer.line(
                        f"The service is up on {settings.public_base_url} (the fake model on {model.endpoint})."
                    )
                    printer.line(
                        f"A simulated caller dials {OUR_NUMBER}" + (f" at {speed:g}x speed" if speed != 1 else "")
                    )
                    printer.line("")
                    caller = FakeTwilioCaller(
                        settings.public_base_url or "",
                        auth_token=auth_token,
                        from_number=CALLER_NUMBER,
                        to_number=OUR_NUMBER,
                        speed=speed,
                    )
                    caller_box.append(caller)
                    async with caller:
                        heard = await _script(caller, printer, load_fixture)
                    with contextlib.suppress(AssertionError):  # the call summary is logged; no need to wait
                        await wait_until(lambda: not app.state.service.calls, 10.0)
                result.problems = caller.violations + model.violations + model.self_violations
    finally:
        service_logger.removeHandler(barge_ins)
        log_stream.close()

    track = heard.track(caller.media_ms)
    recording = mix(track, bytes(caller.sent_audio))
    result.wav = write_wav(out, recording)
    result.heard_bytes = heard.heard_bytes
    result.call_seconds = caller.media_ms / 1000
    result.wall_seconds = time.monotonic() - started
    printer.line("")
    printer.line(
        f"The call lasted {result.call_seconds:.1f} s ({result.wall_seconds:.1f} s here); "
        f"{len(result.barge_ins)} barge-in(s); {heard.heard_bytes / BYTES_PER_MS / 1000:.1f} s of the agent heard."
    )
    printer.line(f"What it sounded like: {result.wav}  (e.g. `aplay {result.wav}` or `afplay {result.wav}`)")
    if speed != 1:
        printer.line(f"  (it plays at the call's own pace, {result.call_seconds:.1f} s, whatever --speed was)")
    printer.line("Nothing was kept: the demo's call records were in a temporary store, now deleted.")
    if log_file is not None:
        printer.line(f"The service's own JSON log of the call: {log_file}")
    else:
        printer.line("(The service's JSON log of the call was discarded; --log FILE keeps it.)")
    for problem in result.problems:
        printer.line(f"protocol problem: {problem}")
    return result


async def _script(caller: Any, printer: Printer, load_fixture: Any) -> HeardAudio:
    """The caller's side of the demo call; returns what it heard."""
    greeting, reply_lead_ms = load_fixture("agent_greeting"), 3000
    heard = HeardAudio()
    if not await caller.dial():
        raise RuntimeError(f"the service refused the call: {caller.refusal}")
    follower = asyncio.create_task(heard.follow(caller))
    try:
        printer.line(f"{0.0:6.1f}s  (the call is connected: Twilio's webhook got TwiML, the Media Stream is open)")
        # 1. the greeting, heard to its end
        await caller.wait_until(lambda: len(caller.played) >= len(greeting) and not caller.pending_marks, 30)
        # 2. the question
        await caller.pause(300)
        await caller.say("caller_book_table")
        # 3. three seconds into the long answer the caller talks over it, changes the booking and, in
        #    the same breath, says goodbye
        start = len(caller.played)
        await caller.wait_until(lambda: len(caller.played) >= start + reply_lead_ms * BYTES_PER_MS, 30)
        await caller.say(load_fixture("caller_interrupt") + load_fixture("caller_goodbye"))  # one turn
        [clear] = await caller.wait_until(lambda: caller.clears, 10)
        # 4. the agent's goodbye, heard to its end; then the caller hangs up
        goodbye = len(load_fixture("agent_goodbye"))
        await caller.wait_until(
            lambda: len(caller.played) >= clear.played_bytes + goodbye and not caller.pending_marks, 30
        )
        await caller.pause(500)
        await caller.hangup()
        printer.line(f"{caller.media_ms / 1000:6.1f}s  (the caller hangs up)")
    finally:
        if not caller.closed:
            follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        heard.observe(caller)
    return heard


def _open_log(path: str | Path | None) -> TextIO:
    return open(path if path is not None else os.devnull, "a", encoding="utf-8")


# ---------------------------------------------------------------- voiceagent fake-model


class BoundFakeRealtimeServer(FakeRealtimeServer):
    """``FakeRealtimeServer`` on a chosen host and port (the test kit's own binds 127.0.0.1 on a free
    port, which is what tests want and a person at a terminal does not)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.host, self.bind_port = host, port

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._serve_session,
            self.host,
            self.bind_port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]


async def serve_fake_model(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str = TEST_API_KEY,
    speed: float = MODEL_LEAD,
    stream: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the fake Realtime model on ``host:port`` until ``stop`` is set (by default: until SIGINT or
    SIGTERM), printing what to put in the service's environment."""
    printer = Printer(stream)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    async with BoundFakeRealtimeServer(host=host, port=port, api_key=api_key, speed=speed) as fake:
        printer.line(f"The fake Realtime model is listening on {fake.endpoint} (GA and preview protocols). Set:")
        printer.line(f"  AZURE_OPENAI_ENDPOINT={fake.endpoint}")
        printer.line(f"  AZURE_OPENAI_API_KEY={api_key}")
        printer.line("  AZURE_OPENAI_DEPLOYMENT=gpt-realtime   (any name is accepted)")
        printer.line("It greets, answers with recorded replies and hears speech by its loudness. Ctrl-C stops it.")
        await stop.wait()
        printer.line(f"Stopped after {len(fake.sessions)} session(s).")
