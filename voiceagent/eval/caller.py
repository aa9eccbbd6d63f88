"""The simulated caller of an eval run, over a ``FakeTwilioCaller``: scripted turns, or a persona played
by a second Realtime session (``ModelConnection``, the service's own client: only the endpoint differs
between a real caller model and the fake standing in for one).

Each turn waits for the agent's answer to the one before (heard, then quiet), unless it barges in a set
time into that answer. Times are on the call's media clock. ``CallerLog`` keeps what the caller did.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from voiceagent.eval.scenario import Scenario, Turn
from voiceagent.eval.voices import CallerVoice
from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnectError, ModelConnection
from voiceagent.realtime.target import ModelTarget
from voiceagent.simulated_call import BYTES_PER_MS, SILENCE, HeardAudio, read_wav_as_ulaw
from voiceagent.testing import FakeTwilioCaller

QUIET_MS = 700  # the agent has finished speaking after this much silence
PERSONA_SILENCE_MS = 800  # the caller model's server VAD: the agent's turn is over after this much silence
LINE_PIECE_MS = 100  # the phone line goes to the caller model in pieces this long


@dataclass
class CallerLog:
    turns_begun: int = 0
    latencies_ms: list[int] = field(default_factory=list)  # end of a caller turn -> the agent's first sound
    hung_up: bool = False
    time_limit_hit: bool = False
    persona_lines: list[str] = field(default_factory=list)  # what the caller model said (its transcript)
    problems: list[str] = field(default_factory=list)  # the caller model could not be reached, or erred


class _Ears:
    """Waits on the caller's media clock, with the time limit as a floor under every wait."""

    def __init__(self, caller: FakeTwilioCaller, heard: HeardAudio, limit_ms: int, log: CallerLog) -> None:
        self.caller, self.heard, self.limit_ms, self.log = caller, heard, limit_ms, log

    async def until(self, done: Callable[[], bool]) -> None:
        def check() -> bool:
            self.heard.observe(self.caller)
            if self.caller.media_ms >= self.limit_ms:
                self.log.time_limit_hit = True
            return self.caller.closed or self.log.time_limit_hit or done()

        with contextlib.suppress(AssertionError):
            await self.caller.wait_until(check, timeout=self.limit_ms / 1000 / self.caller.speed + 10)

    async def answer(self, before: int, settle_ms: int) -> None:
        """Until the agent said something after ``before`` bytes and went quiet, or said nothing for ``settle_ms``."""
        started = self.caller.media_ms
        await self.until(
            lambda: (
                (
                    self.heard.heard_bytes > before
                    and self.heard.quiet_ms() >= QUIET_MS
                    and not self.caller.pending_marks
                )
                or (self.heard.heard_bytes <= before and self.caller.media_ms - started >= settle_ms)
            )
        )


async def play_turns(
    caller: FakeTwilioCaller,
    heard: HeardAudio,
    scenario: Scenario,
    voice: CallerVoice,
    on_turn: Callable[[int], None],
    register: Callable[[bytes, str], None] | None,
) -> CallerLog:
    """The scripted caller: the greeting, then each turn; returns once the call is over or the script is."""
    log = CallerLog()
    ears = _Ears(caller, heard, int(scenario.time_limit_seconds * 1000), log)
    settle = int(scenario.settle_seconds * 1000)
    await ears.answer(0, settle)  # the greeting, if any
    turns = scenario.caller.turns
    for index, turn in enumerate(turns):
        if caller.closed or log.time_limit_hit:
            break
        log.turns_begun = index + 1
        on_turn(index + 1)
        before = heard.heard_bytes
        if await _do(caller, turn, scenario, voice, register, log):
            break
        ended_ms = caller.media_ms
        following = turns[index + 1] if index + 1 < len(turns) else None
        if following is not None and following.barge_in_after_seconds is not None:
            wanted = before + int(following.barge_in_after_seconds * 1000) * BYTES_PER_MS
            await ears.until(functools.partial(_at_least, heard, wanted))
        else:
            await ears.answer(heard.heard_bytes, settle)
        if heard.heard_bytes > before and (turn.say is not None or turn.wav is not None):
            first = _first_sound_ms(caller, heard, ended_ms)
            if first is not None:
                log.latencies_ms.append(first - ended_ms)
    return log


async def _do(
    caller: FakeTwilioCaller,
    turn: Turn,
    scenario: Scenario,
    voice: CallerVoice,
    register: Callable[[bytes, str], None] | None,
    log: CallerLog,
) -> bool:
    """Carry out one turn; True when the caller hung up."""
    if turn.hang_up:
        await caller.hangup()
        log.hung_up = True
        return True
    if turn.press is not None:
        for digit in turn.press:
            await caller.press(digit)
            await caller.pause(200)
        return False
    if turn.silence_seconds is not None:
        await caller.pause(int(turn.silence_seconds * 1000))
        return False
    if turn.say is not None:
        audio = await voice.ulaw(turn.say)
        if register is not None:
            register(audio, turn.say)  # out of band: the fake model is told what this audio says
    else:
        assert turn.wav is not None
        audio = read_wav_as_ulaw(scenario.resolve(turn.wav))
    with contextlib.suppress(RuntimeError):  # the call ended meanwhile
        await caller.say(audio)
        await caller.pause(100)
    return False


def _at_least(heard: HeardAudio, wanted: int) -> bool:
    return heard.heard_bytes >= wanted


async def _say(caller: FakeTwilioCaller, audio: bytes) -> None:
    with contextlib.suppress(RuntimeError):  # the call ended meanwhile
        await caller.say(audio)


def _media_past(caller: FakeTwilioCaller, ms: int) -> bool:
    return caller.media_ms >= ms


def _first_sound_ms(caller: FakeTwilioCaller, heard: HeardAudio, since_ms: int) -> int | None:
    """When the agent was first heard after ``since_ms`` (from the caller's timeline of media received)."""
    for ms, kind, _detail in caller.timeline:
        if ms >= since_ms and kind == "media_out":
            return ms
    return None


async def play_persona(
    caller: FakeTwilioCaller,
    heard: HeardAudio,
    scenario: Scenario,
    target: ModelTarget,
    on_turn: Callable[[int], None],
    register: Callable[[bytes, str], None] | None = None,
) -> CallerLog:
    """The caller is a second Realtime session (the service's own client, ``ModelConnection``): it hears
    the phone line as the caller would — the agent's audio and the silence between, so that its server
    VAD hears each of the agent's turns end — and what it says is sent into the call as the caller's
    audio. ``register`` (the fake agent model's) is told the words of each answer, from the caller model's
    own transcript. Over after ``max_turns`` answers (then the agent's reply), or when the call ends."""
    persona = scenario.caller.persona
    assert persona is not None
    log = CallerLog()
    ears = _Ears(caller, heard, int(scenario.time_limit_seconds * 1000), log)
    try:
        connection = await ModelConnection.open(target)
    except ModelConnectError as exc:
        log.problems.append(f"cannot reach the caller model: {exc}")
        return log
    config = ev.SessionConfig(persona.instructions, persona.voice, vad_silence_ms=PERSONA_SILENCE_MS)
    await connection.send(ev.UpdateSession(config))
    saying: list[asyncio.Task[None]] = []  # each piece is queued as it arrives: no gaps between pieces
    answered: list[int] = []  # media clock ms when each answer had all been sent into the call

    async def finish(pieces: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*pieces)
        answered.append(caller.media_ms)

    async def listen() -> None:
        line_ms, played = 0, 0
        while not caller.closed and not log.time_limit_hit:
            await ears.until(functools.partial(_media_past, caller, line_ms + LINE_PIECE_MS))
            now_ms, new = caller.media_ms, bytes(caller.played[played:])
            played += len(new)
            quiet = max(0, (now_ms - line_ms) * BYTES_PER_MS - len(new))
            line_ms = now_ms
            await connection.send(ev.AppendAudio(base64.b64encode(new + bytes([SILENCE]) * quiet).decode()))

    async def hear_model() -> None:
        audio_of: dict[str, bytearray] = {}
        speaking: set[str] = set()
        async for event in connection:
            if isinstance(event, ev.AudioDelta):
                if event.response_id not in speaking:
                    speaking.add(event.response_id)
                    log.turns_begun += 1
                    on_turn(log.turns_begun)
                audio = base64.b64decode(event.audio)
                audio_of.setdefault(event.item_id, bytearray()).extend(audio)
                saying.append(asyncio.create_task(_say(caller, audio)))
            elif isinstance(event, ev.AgentTranscriptDone):
                log.persona_lines.append(event.transcript)
                if register is not None and event.item_id in audio_of:
                    register(bytes(audio_of.pop(event.item_id)), event.transcript)
            elif isinstance(event, ev.ResponseDone) and event.response_id in speaking:
                saying.append(asyncio.create_task(finish(list(saying))))
            elif isinstance(event, ev.ModelError | ev.SessionRejected) and not getattr(event, "routine", False):
                log.problems.append(f"the caller model: {event.message}")

    tasks = [asyncio.create_task(job()) for job in (listen, hear_model)]
    try:
        await ears.until(lambda: len(answered) >= persona.max_turns)
        await ears.answer(heard.heard_bytes, int(scenario.settle_seconds * 1000))
    finally:
        tasks += saying
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connection.close()
    for ended_ms in answered:
        first = _first_sound_ms(caller, heard, ended_ms)
        if first is not None:
            log.latencies_ms.append(first - ended_ms)
    return log
