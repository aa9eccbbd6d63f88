"""One run of one scenario: a call placed as Twilio would, played by the simulated caller, and what came
of it (``RunResult``), with the transcript and the call as heard (stereo WAV: agent left, caller right)
written to the run's files."""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceagent.eval.agent import CallWatch, InProcessAgent, ToolCallSeen
from voiceagent.eval.caller import CallerLog, play_persona, play_turns
from voiceagent.eval.scenario import Scenario
from voiceagent.eval.voices import CallerVoice, EspeakVoice
from voiceagent.simulated_call import HeardAudio
from voiceagent.testing import FakeTwilioCaller, wait_until
from voiceagent.testing.speech import Speech
from voiceagent.transcripts import TranscriptLine

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.11-3.12; audioop-lts on 3.13
    import audioop


@dataclass
class RunResult:
    scenario: Scenario
    index: int  # 1-based, among the scenario's repeats
    ending: str = "open"  # hangup | transfer | open | caller
    transfer_to: str | None = None
    lines: list[tuple[int, TranscriptLine]] = field(default_factory=list)
    tools: list[ToolCallSeen] = field(default_factory=list)
    caller: CallerLog = field(default_factory=CallerLog)
    call_seconds: float = 0.0
    wall_seconds: float = 0.0
    refusals: int = 0
    truncate_errors: int = 0
    problems: list[str] = field(default_factory=list)  # protocol violations, errors of the run itself
    failures: list[str] = field(default_factory=list)  # filled by score()
    wav: Path | None = None
    transcript: Path | None = None
    service_visible: bool = True  # False with --url: the service's transcript and tools are not seen

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def name(self) -> str:
        return f"{self.scenario.name} #{self.index}"


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "scenario"


async def run_once(
    scenario: Scenario,
    index: int,
    *,
    out: Path,
    speech: Speech,
    agent: InProcessAgent | None = None,
    url: str | None = None,
    auth_token: str | None = None,
    persona_target: Any = None,
    speed: float = 1.0,
    voice: CallerVoice | None = None,
) -> RunResult:
    """Place one call of ``scenario`` to ``agent`` (in process) or ``url`` and say what happened."""
    result = RunResult(scenario, index, service_visible=agent is not None)
    started = time.monotonic()
    base_url = agent.base_url if agent is not None else (url or "")
    token = agent.auth_token if agent is not None else auth_token
    # marked as an eval (with the auth token): the service keeps the call out of the operator's history
    caller = FakeTwilioCaller(
        base_url, auth_token=token, from_number="+15550100000", speed=speed, eval_mark=bool(token)
    )
    watch = agent.watches.setdefault(caller.call_sid, CallWatch()) if agent is not None else CallWatch()
    heard = HeardAudio()
    fake_before = _fake_counts(agent)

    def on_turn(turn: int) -> None:
        watch.turn = turn

    async with caller:
        try:
            dialled = await caller.dial()
        except OSError as exc:
            result.problems.append(f"cannot reach the service at {base_url}: {exc}")
            dialled = False
        if not dialled:
            result.problems.append(f"the service refused the call: {caller.refusal}")
        else:
            follower = asyncio.create_task(heard.follow(caller))
            try:
                register = agent.director.register if agent is not None and agent.director else None
                if scenario.caller.persona is not None:
                    result.caller = await play_persona(caller, heard, scenario, persona_target, on_turn, register)
                else:
                    result.caller = await play_turns(
                        caller, heard, scenario, voice or EspeakVoice(speech), on_turn, register
                    )
                if caller.streaming:
                    await caller.hangup()
                elif caller.closed_by_server:
                    with contextlib.suppress(AssertionError):
                        after = await caller.wait_after_stream(5.0)
                        result.ending, result.transfer_to = _ending(after)
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
                heard.observe(caller)
    if result.caller.hung_up:
        result.ending = "caller"
    if agent is not None:
        await _settled(agent, caller.call_sid)
    result.lines, result.tools = list(watch.lines), list(watch.tools)
    result.refusals, result.truncate_errors = (
        now - then for now, then in zip(_fake_counts(agent), fake_before, strict=True)
    )
    result.problems += result.caller.problems + caller.violations
    if agent is not None and agent.fake is not None:
        result.problems += agent.fake.violations + agent.fake.self_violations
    result.call_seconds = caller.media_ms / 1000
    result.wall_seconds = time.monotonic() - started
    stem = out / f"{slug(scenario.name)}-{index}"
    result.wav = write_stereo(stem.with_suffix(".wav"), heard.track(caller.media_ms), bytes(caller.sent_audio))
    result.transcript = stem.with_suffix(".txt")
    result.transcript.write_text(transcript_text(result), encoding="utf-8")
    return result


def _ending(after: Any) -> tuple[str, str | None]:
    for verb in after.verbs:
        number = getattr(verb, "number", None) or getattr(verb, "sip", None)
        if type(verb).__name__ == "Dial":
            return "transfer", number
    return "hangup", None


def _fake_counts(agent: InProcessAgent | None) -> tuple[int, int]:
    """Refused requests and truncate errors the fake model has seen so far (all its sessions)."""
    if agent is None or agent.fake is None:
        return 0, 0
    sessions = agent.fake.sessions
    refused = sum(len(session.refused_responses) for session in sessions)
    truncates = sum(
        1
        for session in sessions
        for error in session.errors_sent
        if "truncat" in str(error.get("error", {}).get("message", "")).lower()
        or "audio_end_ms" in str(error.get("error", {}).get("param", ""))
    )
    return refused, truncates


async def _settled(agent: InProcessAgent, call_sid: str) -> None:
    """Until the service has finished the call (its last transcript lines are in)."""
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: call_sid not in agent.app.state.service.calls, 10.0)


def transcript_text(result: RunResult) -> str:
    lines = [f"# {result.name}: {result.ending}, {result.call_seconds:.1f} s of call"]
    for turn, line in result.lines:
        who = {"agent": "Agent", "caller": "Caller", "tool": "Tool"}.get(line.role, line.role)
        cut = " [cut off]" if line.interrupted else ""
        lines.append(f"[turn {turn}] {who}: {line.text}{cut}")
    return "\n".join(lines) + "\n"


def write_stereo(path: Path, agent_ulaw: bytes, caller_ulaw: bytes) -> Path:
    """The call as heard: the agent on the left channel, the caller on the right, 16-bit 8 kHz."""
    length = max(len(agent_ulaw), len(caller_ulaw))
    left = audioop.ulaw2lin(agent_ulaw.ljust(length, b"\xff"), 2)
    right = audioop.ulaw2lin(caller_ulaw.ljust(length, b"\xff"), 2)
    both = audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(both)
    return path
