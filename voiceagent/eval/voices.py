"""Who speaks the caller's scripted text turns (``voiceagent eval --caller-voice``):

* ``espeak`` (the default): espeak-ng on this machine, at the phone line's 8 kHz μ-law;
* ``model``: a Realtime session reads each line verbatim (``response.create`` whose instructions ask for
  the line word for word, audio out in g711_ulaw) — far more natural with an account. With none
  configured it is the bundled fake model reading through espeak-ng (``fake_realtime.reader``): the same
  client code path, only the endpoint differs.

Each line is spoken once per run of ``eval`` and kept: repeats of a scenario send the same audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnection
from voiceagent.realtime.target import ModelTarget
from voiceagent.testing.fake_realtime.reader import READ_LINE, LineReader
from voiceagent.testing.fake_realtime.server import FakeRealtimeServer
from voiceagent.testing.speech import Speech

__all__ = ["CALLER_VOICES", "CallerVoice", "EspeakVoice", "ModelVoice", "caller_voice", "model_target"]

CALLER_VOICES = ("espeak", "model")
READER_INSTRUCTIONS = (
    "You are the voice of a caller in a test of a telephone agent. When asked to read a line, say exactly "
    "that line, word for word, in a natural speaking voice, and nothing else."
)
READ_TIMEOUT_SECONDS = 60.0


class CallerVoice(Protocol):
    async def ulaw(self, text: str) -> bytes:
        """``text`` spoken as 8 kHz μ-law."""
        ...


class EspeakVoice:
    def __init__(self, speech: Speech) -> None:
        self.speech = speech

    async def ulaw(self, text: str) -> bytes:
        return self.speech.ulaw(text)


class ModelReadError(RuntimeError):
    """The model did not read a line (its response failed, or the connection closed)."""


class ModelVoice:
    """One Realtime session reading lines, one at a time (a session runs one response at a time)."""

    def __init__(self, connection: ModelConnection) -> None:
        self._connection = connection
        self._events = aiter(connection)
        self._lock = asyncio.Lock()
        self._read: dict[str, bytes] = {}

    @classmethod
    async def open(cls, target: ModelTarget, voice: str = "alloy") -> ModelVoice:
        """A reading session on ``target``: μ-law both ways (the dialect's ``session.update``), ``voice``."""
        connection = await ModelConnection.open(target)
        await connection.send(ev.UpdateSession(ev.SessionConfig(READER_INSTRUCTIONS, voice)))
        return cls(connection)

    async def close(self) -> None:
        await self._connection.close()

    async def ulaw(self, text: str) -> bytes:
        async with self._lock:
            if text not in self._read:
                async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                    self._read[text] = await self._read_aloud(text)
            return self._read[text]

    async def _read_aloud(self, text: str) -> bytes:
        await self._connection.send(ev.CreateResponse(READ_LINE.format(line=text)))
        audio = bytearray()
        async for event in self._events:
            if isinstance(event, ev.AudioDelta):
                audio += base64.b64decode(event.audio)
            elif isinstance(event, ev.ModelError | ev.SessionRejected) and not getattr(event, "routine", False):
                raise ModelReadError(f"the caller's voice model refused to read {text!r}: {event.message}")
            elif isinstance(event, ev.ResponseDone):
                if event.status != "completed" or not audio:
                    raise ModelReadError(f"the caller's voice model did not read {text!r}: {event.status}")
                return bytes(audio)
        raise ModelReadError(f"the caller's voice model closed the connection ({self._connection.close_code})")


def model_target(model: Mapping[str, str]) -> ModelTarget | None:
    """The configured model (Azure when an endpoint is set, else OpenAI), or None with no account."""
    if model.get("AZURE_OPENAI_ENDPOINT"):
        return ModelTarget(
            "azure",
            model["AZURE_OPENAI_ENDPOINT"].rstrip("/"),
            model.get("AZURE_OPENAI_DEPLOYMENT", ""),
            model.get("AZURE_OPENAI_API_KEY"),
            model.get("AZURE_OPENAI_API_VERSION"),
        )
    if model.get("OPENAI_API_KEY"):
        return ModelTarget(
            "openai",
            model.get("OPENAI_BASE_URL", "https://api.openai.com").rstrip("/"),
            model.get("OPENAI_REALTIME_MODEL", "gpt-realtime"),
            model["OPENAI_API_KEY"],
        )
    return None


@contextlib.asynccontextmanager
async def caller_voice(
    name: str, model: Mapping[str, str], speech: Speech, *, voice: str = "alloy", speed: float = 4.0
) -> AsyncIterator[CallerVoice]:
    """The caller's voice called ``name`` (``CALLER_VOICES``), for the ``async with`` block. ``model``
    with no account: the bundled fake model reads the lines."""
    if name == "espeak":
        yield EspeakVoice(speech)
        return
    async with contextlib.AsyncExitStack() as stack:
        target = model_target(model)
        if target is None:
            key = secrets.token_urlsafe(24)
            fake = await stack.enter_async_context(
                FakeRealtimeServer(api_key=key, speed=speed, director=LineReader(speech=speech))
            )
            target = ModelTarget("azure", fake.endpoint, "gpt-realtime", key)
        reader = await ModelVoice.open(target, voice)
        stack.push_async_callback(reader.close)
        yield reader
