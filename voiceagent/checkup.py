"""``voiceagent check``: the configuration, then one real round trip to the model, reported in words a
newcomer can act on.

The round trip is what a call does first, and a little more: connect (``ModelConnection.open``, with the
service's own URL and credentials), send the session configuration the service would send, wait for
``session.updated`` and check it took μ-law both ways; then say one short caller phrase (a bundled
recording) and wait until the model has heard it, transcribed it and started to answer in audio, which
is cancelled at once. Every refusal is turned into what to change, with the server's own words.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING, Any

from voiceagent.config import Settings
from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnectError, ModelConnection
from voiceagent.simulated_call import BYTES_PER_MS, SILENCE, Printer, wav_to_ulaw

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

TEST_PHRASE = "caller_book_table"  # a bundled recording of a caller: "Hi, I would like to book a table..."
TRAILING_SILENCE_MS = 1500  # longer than any server VAD silence setting's default: the turn ends
APPEND_CHUNK_BYTES = 1600  # 200 ms per input_audio_buffer.append
TURN_SECONDS = 20.0  # for the model to hear, transcribe and start answering the test phrase
CONFIRM_SECONDS = 10.0  # at least this long (twice VOICEAGENT_SESSION_READY_SECONDS if longer) for session.updated


@dataclass
class Report:
    """What the check found: ``problems`` (each one says what to change) and ``notes`` (what worked)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- what to tell a newcomer


def explain_connect_error(error: ModelConnectError, settings: Settings) -> str:
    """What to change when the handshake failed, by HTTP status (``None``: never got an answer)."""
    model, status = settings.model, error.status
    azure = model.provider == "azure"
    said = f" (the server said: {error})" if status is not None else f" ({error})"
    if error.sign_in:
        return (
            "no AZURE_OPENAI_API_KEY is set, so the service signs in with Entra ID, and that failed: set "
            "AZURE_OPENAI_API_KEY, or sign this machine in (`az login`, or a managed identity) with the role "
            "'Cognitive Services OpenAI User' on the resource" + said
        )
    if status == 401:
        if not azure:
            return "OPENAI_API_KEY was refused (HTTP 401): create a key at https://platform.openai.com/api-keys" + said
        if model.api_key:
            return (
                "AZURE_OPENAI_API_KEY was refused (HTTP 401): copy KEY 1 or KEY 2 from the Azure portal page "
                f"'Keys and Endpoint' of the resource at AZURE_OPENAI_ENDPOINT={model.endpoint} (a key of another "
                "resource does not work)" + said
            )
        return (
            "the Entra ID token was refused (HTTP 401): the identity this machine signs in with (az login, a "
            "managed identity, ...) needs the role 'Cognitive Services OpenAI User' on the resource at "
            f"AZURE_OPENAI_ENDPOINT={model.endpoint}; or set AZURE_OPENAI_API_KEY" + said
        )
    if status == 403:
        return (
            "access denied (HTTP 403): with Entra ID the identity lacks the role 'Cognitive Services OpenAI User'; "
            "otherwise the resource's network rules (firewall, private endpoint) keep this machine out" + said
        )
    if status == 404:
        if not azure:
            return f"OPENAI_REALTIME_MODEL={model.deployment} is not a model this key can use (HTTP 404)" + said
        version = (
            f", or AZURE_OPENAI_API_VERSION={model.api_version} is not served there (unset it for the GA protocol)"
            if model.api_version
            else ""
        )
        return (
            f"no deployment named AZURE_OPENAI_DEPLOYMENT={model.deployment} at AZURE_OPENAI_ENDPOINT={model.endpoint} "
            "(HTTP 404): use the deployment's name as listed under Deployments in Azure AI Foundry (not the "
            f"model's name), on the resource that has it{version}" + said
        )
    if status == 400:
        if model.api_version and "version" in str(error).lower():
            return (
                f"AZURE_OPENAI_API_VERSION={model.api_version} was refused (HTTP 400): unset it to use the GA "
                "protocol (recommended)" + said
            )
        return (
            f"the model refused the connection (HTTP 400): check that AZURE_OPENAI_DEPLOYMENT={model.deployment} is "
            "a Realtime model deployment (gpt-realtime, gpt-realtime-mini, gpt-4o-realtime-preview)" + said
        )
    if status == 429:
        return "the model is rate limited or out of quota (HTTP 429): wait, or raise the deployment's quota" + said
    if status is not None and status >= 500:
        return f"the model service failed (HTTP {status}): try again; if it persists, check the service status" + said
    if status is not None:
        return f"the model refused the connection (HTTP {status})" + said
    where = "AZURE_OPENAI_ENDPOINT" if azure else "OPENAI_BASE_URL"
    return (
        f"could not reach the model at {where}={model.endpoint}: check the address (https://RESOURCE.openai.azure.com "
        "for Azure) and this machine's network, DNS and proxy" + said
    )


def explain_rejection(code: str | None, message: str, settings: Settings) -> str:
    """What to change when the server refused our ``session.update``."""
    session, lowered = settings.session, message.lower()
    said = f" (the server said: {code + ': ' if code else ''}{message})"
    # the server's words name the field or quote the value it refused ("Invalid value: 'cedar'. Supported ...")
    if "voice" in lowered or f"'{session.voice}'" in message:
        return (
            f"VOICEAGENT_VOICE={session.voice} was refused by this deployment: choose a voice it offers "
            "(marin and cedar exist only on GA gpt-realtime deployments)" + said
        )
    if "transcription" in lowered or f"'{session.transcription_model}'" in message:
        return (
            f"VOICEAGENT_TRANSCRIPTION_MODEL={session.transcription_model} was refused: on Azure it must name a "
            "transcription deployment of this resource (e.g. one of whisper or gpt-4o-transcribe)" + said
        )
    if any(word in lowered for word in ("format", "pcmu", "g711", "ulaw")):
        return (
            "the model refused μ-law audio (audio/pcmu), which phone calls need: use a GA gpt-realtime "
            "deployment and unset AZURE_OPENAI_API_VERSION" + said
        )
    if any(word in lowered for word in ("turn_detection", "vad", "threshold", "silence", "padding")):
        return "the turn detection settings were refused: check VOICEAGENT_VAD and VOICEAGENT_VAD_*" + said
    if "tool" in lowered or "function" in lowered:
        return "the tools were refused: check VOICEAGENT_TOOLS and VOICEAGENT_TOOLS_FILE" + said
    if "instructions" in lowered:
        return "the instructions were refused: check VOICEAGENT_INSTRUCTIONS(_FILE)" + said
    return "the model refused the session configuration" + said


# ---------------------------------------------------------------- the round trip


def caller_phrase() -> bytes:
    """The bundled caller recording (μ-law, 8 kHz), read without the test kit's extra dependencies."""
    wav = resources.files("voiceagent").joinpath("testing", "fixtures", f"{TEST_PHRASE}.wav").read_bytes()
    return wav_to_ulaw(wav)


async def check_model(
    settings: Settings,
    session: ev.SessionConfig,
    *,
    credential: AsyncTokenCredential | None = None,
    speak: bool = True,
    stream: Any = None,
) -> Report:
    """Connect, configure a session, and (``speak``) have the model hear and answer one phrase."""
    printer, report = Printer(stream), Report()
    model = settings.model
    printer.line(
        f"Connecting to the {model.provider} Realtime model ({model.dialect} protocol) at {model.endpoint} ..."
    )
    try:
        connection = await ModelConnection.open(model, credential=credential, timeout=settings.connect_timeout_seconds)
    except ModelConnectError as exc:
        report.problems.append(explain_connect_error(exc, settings))
        return _print(report, printer)
    report.notes.append(f"connected: {connection.url}")
    printer.line("  connected; sending the session configuration ...")
    events = _events(connection)
    try:
        configured = await _configure(connection, events, session, settings, report)
        if configured and speak:
            printer.line(f"  saying a test phrase ({TEST_PHRASE}) ...")
            await _one_turn(connection, events, settings, report)
    finally:
        await events.aclose()
        with contextlib.suppress(Exception):
            await connection.close()
    return _print(report, printer)


def _print(report: Report, printer: Printer) -> Report:
    for note in report.notes:
        printer.line(f"  ok: {note}")
    for problem in report.problems:
        printer.line(f"  PROBLEM: {problem}")
    return report


async def _events(connection: ModelConnection) -> AsyncGenerator[ev.ModelEvent, None]:
    async for event in connection:
        yield event


async def _next(events: AsyncIterator[ev.ModelEvent], deadline: float) -> ev.ModelEvent | None:
    """The next event before ``deadline`` (loop time); None when the connection closed; TimeoutError."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise TimeoutError
    try:
        return await asyncio.wait_for(anext(events), remaining)
    except StopAsyncIteration:
        return None


def _closed(connection: ModelConnection, while_doing: str) -> str:
    reason = f": {connection.close_reason}" if connection.close_reason else ""
    return f"the model closed the connection {while_doing} (code {connection.close_code}{reason})"


async def _configure(
    connection: ModelConnection,
    events: AsyncIterator[ev.ModelEvent],
    session: ev.SessionConfig,
    settings: Settings,
    report: Report,
) -> bool:
    await connection.send(ev.UpdateSession(session))
    wait = max(CONFIRM_SECONDS, 2 * settings.session_ready_seconds)
    deadline = asyncio.get_running_loop().time() + wait
    try:
        while True:
            event = await _next(events, deadline)
            match event:
                case None:
                    report.problems.append(_closed(connection, "instead of confirming the session"))
                    return False
                case ev.SessionRejected(code=code, message=message):
                    report.problems.append(explain_rejection(code, message, settings))
                    return False
                case ev.SessionUpdated(input_format=heard, output_format=spoken):
                    if (heard, spoken) != (ev.PCMU, ev.PCMU):
                        report.problems.append(
                            f"the model did not take μ-law audio both ways (input {heard}, output {spoken}): "
                            "a caller would hear static. Use a GA gpt-realtime deployment and unset "
                            "AZURE_OPENAI_API_VERSION"
                        )
                        return False
                    voice, tools = session.voice, len(session.tools)
                    report.notes.append(f"session configured: μ-law both ways, voice {voice}, {tools} tool(s)")
                    return True
                case ev.ModelError(code=code, message=message, routine=False):
                    report.notes.append(f"the model reported an error on the way: {code}: {message}")
                case _:
                    pass
    except TimeoutError:
        report.problems.append(
            f"the model did not confirm the session within {wait:g} s (no session.updated): the deployment may "
            "be overloaded; try again"
        )
        return False


@dataclass
class _Turn:
    heard: bool = False
    transcript: str | None = None
    transcription_failed: str | None = None
    answered: bool = False
    answer_failed: str | None = None

    @property
    def complete(self) -> bool:
        transcribed = self.transcript is not None or self.transcription_failed is not None
        return transcribed and (self.answered or self.answer_failed is not None)


async def _one_turn(
    connection: ModelConnection, events: AsyncIterator[ev.ModelEvent], settings: Settings, report: Report
) -> None:
    audio = caller_phrase() + bytes([SILENCE]) * (TRAILING_SILENCE_MS * BYTES_PER_MS)
    for start in range(0, len(audio), APPEND_CHUNK_BYTES):
        chunk = audio[start : start + APPEND_CHUNK_BYTES]
        await connection.send(ev.AppendAudio(base64.b64encode(chunk).decode("ascii")))
    turn = _Turn()
    deadline = asyncio.get_running_loop().time() + TURN_SECONDS
    try:
        while not turn.complete:
            event = await _next(events, deadline)
            match event:
                case None:
                    report.problems.append(_closed(connection, "during the test phrase"))
                    break
                case ev.SpeechStarted() | ev.SpeechStopped():
                    turn.heard = True
                case ev.CallerTranscript(transcript=text):
                    turn.transcript = text
                case ev.CallerTranscriptFailed(message=message):
                    turn.transcription_failed = message
                case ev.ResponseCreated():
                    turn.heard = True
                case ev.AudioDelta():
                    if not turn.answered:
                        turn.answered = True
                        await connection.send(ev.CancelResponse())  # heard enough: spend no more
                case ev.TextDelta():
                    turn.answer_failed = "the model answered in text, not audio"
                case ev.ResponseDone(status=status, detail=detail) if status == "failed" and not turn.answered:
                    turn.answer_failed = f"the response failed: {detail or status}"
                case ev.ModelError(code=code, message=message, routine=False):
                    report.notes.append(f"the model reported an error on the way: {code}: {message}")
                case _:
                    pass
    except TimeoutError:
        pass
    _judge(turn, settings, report)


def _judge(turn: _Turn, settings: Settings, report: Report) -> None:
    session = settings.session
    if not turn.heard:
        report.problems.append(
            f"the model did not hear the test phrase within {TURN_SECONDS:g} s (no speech detected): "
            "callers could not be heard. Check VOICEAGENT_VAD and VOICEAGENT_VAD_THRESHOLD"
        )
        return
    if turn.transcription_failed is not None:
        report.problems.append(
            f"caller transcription failed: {turn.transcription_failed}. On Azure, "
            f"VOICEAGENT_TRANSCRIPTION_MODEL={session.transcription_model} must name a transcription deployment "
            "of this resource (e.g. one of whisper or gpt-4o-transcribe); calls work without it, but every "
            "caller line in the transcript is lost"
        )
    elif turn.transcript is not None:
        report.notes.append(f"caller speech heard and transcribed: {turn.transcript!r}")
    else:
        report.problems.append(
            f"no transcript of the test phrase arrived within {TURN_SECONDS:g} s: check "
            f"VOICEAGENT_TRANSCRIPTION_MODEL={session.transcription_model}"
        )
    if turn.answered:
        report.notes.append("the model answered in audio (the answer was cancelled at once)")
    else:
        report.problems.append(
            f"the model did not answer the test phrase in audio: {turn.answer_failed or 'no audio arrived in time'}"
        )


# ---------------------------------------------------------------- the whole check


async def run_check(settings: Settings, session: ev.SessionConfig, *, speak: bool = True, stream: Any = None) -> Report:
    """``check_model`` with the credential the service would use (Entra ID when there is no API key)."""
    model = settings.model
    if model.provider == "azure" and not model.api_key:
        from azure.identity.aio import DefaultAzureCredential

        async with DefaultAzureCredential() as credential:
            return await check_model(settings, session, credential=credential, speak=speak, stream=stream)
    return await check_model(settings, session, speak=speak, stream=stream)


def tool_warnings(settings: Settings) -> list[tuple[str, str]]:
    """What ``ToolBox.warnings`` says of the operator's tools (``ToolConfigError`` if they do not load)."""
    from voiceagent.tools import load_toolbox

    box = load_toolbox(
        modules=settings.tool_modules,
        tools_file=settings.tools_file,
        env=settings.environment,
        timeout_seconds=settings.tool_timeout_seconds,
    )
    return box.warnings()


async def session_with_tools(settings: Settings) -> ev.SessionConfig:
    """The session configuration the service sends: the operator's tools checked and declared, plus the
    built-in ones (``ToolConfigError`` names what is wrong)."""
    from voiceagent.call.agent_tools import END_CALL, TRANSFER_CALL
    from voiceagent.call_control import builtin_tools
    from voiceagent.tools import load_toolbox

    box = load_toolbox(
        modules=settings.tool_modules,
        tools_file=settings.tools_file,
        env=settings.environment,
        timeout_seconds=settings.tool_timeout_seconds,
        reserved_names=(END_CALL, TRANSFER_CALL),
    )
    try:
        declared = builtin_tools(end_call=settings.end_call, transfer_to=settings.transfer_to) + box.specs
    finally:
        await box.aclose()
    return replace(settings.session, tools=declared)
