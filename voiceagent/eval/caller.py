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
from typing import Any

from voiceagent.eval.scenario import Persona, Scenario, Turn
from voiceagent.simulated_call import BYTES_PER_MS, HeardAudio, read_wav_as_ulaw
from voiceagent.testing import FakeTwilioCaller
from voiceagent.testing.speech import Speech

QUIET_MS = 700  # the agent has finished speaking after this much silence


@dataclass
class CallerLog:
    turns_begun: int = 0
    latencies_ms: list[int] = field(default_factory=list)  # end of a caller turn -> the agent's first sound
    hung_up: bool = False
    time_limit_hit: bool = False
    notes: list[str] = field(default_factory=list)


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
    speech: Speech,
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
        if await _do(caller, turn, scenario, speech, register, log):
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
    speech: Speech,
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
        audio = speech.ulaw(turn.say)
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


def _played_past(caller: FakeTwilioCaller, sent: int) -> bool:
    return len(caller.played) > sent


def _first_sound_ms(caller: FakeTwilioCaller, heard: HeardAudio, since_ms: int) -> int | None:
    """When the agent was first heard after ``since_ms`` (from the caller's timeline of media received)."""
    for ms, kind, _detail in caller.timeline:
        if ms >= since_ms and kind == "media_out":
            return ms
    return None


async def play_persona(
    caller: FakeTwilioCaller, heard: HeardAudio, scenario: Scenario, target: Any, on_turn: Callable[[int], None]
) -> CallerLog:
    """The caller is a second Realtime session: it hears what our agent says and its answers are the
    caller's voice. Over after ``max_turns`` of its answers (then the agent's reply), or when the call ends."""
    from voiceagent.realtime import events as ev
    from voiceagent.realtime.connection import ModelConnection

    persona = scenario.caller.persona
    assert isinstance(persona, Persona)
    log = CallerLog()
    ears = _Ears(caller, heard, int(scenario.time_limit_seconds * 1000), log)
    connection = await ModelConnection.open(target)
    await connection.send(ev.UpdateSession(ev.SessionConfig(instructions=persona.instructions, voice=persona.voice)))
    spoken: asyncio.Queue[bytes] = asyncio.Queue()
    answers: list[str] = []

    async def listen() -> None:  # what the caller hears goes to the caller model
        sent = 0
        while not caller.closed:
            await ears.until(functools.partial(_played_past, caller, sent))
            new = bytes(caller.played[sent:])
            sent += len(new)
            if new:
                await connection.send(ev.AppendAudio(base64.b64encode(new).decode()))

    async def hear_model() -> None:
        async for event in connection:
            if isinstance(event, ev.AudioDelta):
                spoken.put_nowait(base64.b64decode(event.audio))
            elif isinstance(event, ev.ResponseDone):
                answers.append(event.response_id)
                log.turns_begun = len(answers)
                on_turn(len(answers))

    async def speak() -> None:
        while not caller.closed:
            audio = await spoken.get()
            with contextlib.suppress(RuntimeError):
                await caller.say(audio)

    tasks = [asyncio.create_task(job()) for job in (listen, hear_model, speak)]
    try:
        await ears.until(lambda: len(answers) >= persona.max_turns)
        await ears.answer(heard.heard_bytes, int(scenario.settle_seconds * 1000))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connection.close()
    return log
