"""The expectations of a scenario against what a run did: each failure says which expectation, at which
turn of the caller, and what happened instead."""

from __future__ import annotations

import json
import re
from typing import Any

from voiceagent.eval.run import RunResult
from voiceagent.eval.scenario import Scenario

__all__ = ["score"]


def _shown(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}({json.dumps(arguments, sort_keys=True)[1:-1]})" if arguments else f"{name}()"


def _turn(scenario: Scenario, turn: int) -> str:
    turns = scenario.caller.turns
    if turn == 0:
        return "before the caller's first turn"
    if turn <= len(turns):
        return f"at turn {turn} ({turns[turn - 1].describe()})"
    return f"at turn {turn}"


def _subset(wanted: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(key in got and got[key] == value for key, value in wanted.items())


def score(result: RunResult) -> RunResult:
    """Fill ``result.failures`` (empty: passed)."""
    expect, scenario, failures = result.scenario.expect, result.scenario, result.failures
    failures.extend(f"problem: {problem}" for problem in result.problems)
    if result.service_visible:
        position = 0
        for number, wanted in enumerate(expect.tools):
            match = next(
                (
                    i
                    for i in range(position, len(result.tools))
                    if result.tools[i].name == wanted.name and _subset(wanted.arguments, result.tools[i].arguments)
                ),
                None,
            )
            if match is not None:
                position = match + 1
                continue
            rest = result.tools[position:]
            expected = _shown(wanted.name, wanted.arguments)
            if rest:
                seen = rest[0]
                instead = f"{_turn(scenario, seen.turn)} the agent called {_shown(seen.name, seen.arguments)} instead"
                others = [_shown(t.name, t.arguments) for t in rest[1:]]
                instead += f" (then {', '.join(others)})" if others else " (and nothing after)"
            else:
                last = result.caller.turns_begun
                after = _turn(scenario, result.tools[-1].turn) if result.tools else "the call began"
                instead = f"no tool was called after {after}"
                instead += f" (the caller played {last} turn(s))"
            failures.append(f"expect.tools[{number}]: {expected} was not called; {instead}")
            break
        if expect.no_other_tools and len(result.tools) > len(expect.tools):
            failures.append(
                "expect.no_other_tools: called " + ", ".join(_shown(t.name, t.arguments) for t in result.tools)
            )
        said = [(turn, line) for turn, line in result.lines if line.role in ("agent", "caller")]
        text = "\n".join(f"{line.role}: {line.text}" for _, line in said)
        for pattern in expect.transcript_contains:
            if re.search(pattern, text, re.IGNORECASE | re.MULTILINE) is None:
                failures.append(
                    f"expect.transcript_contains: /{pattern}/ is nowhere in the transcript ({len(said)} lines)"
                )
        for pattern in expect.transcript_excludes:
            for turn, line in said:
                if re.search(pattern, f"{line.role}: {line.text}", re.IGNORECASE) is not None:
                    failures.append(
                        f"expect.transcript_excludes: /{pattern}/ {_turn(scenario, turn)}: "
                        f"{line.role} said {line.text!r}"
                    )
                    break
    if expect.ends is not None and result.ending != expect.ends:
        limit = " (the time limit was reached)" if result.caller.time_limit_hit else ""
        failures.append(
            f"expect.ends: {expect.ends!r}, but the call ended {result.ending!r}{limit} "
            f"{_turn(scenario, result.caller.turns_begun)}"
        )
    if expect.transfer_to is not None and result.transfer_to != expect.transfer_to:
        failures.append(
            f"expect.transfer_to: {expect.transfer_to}, but it was {result.transfer_to or 'not transferred'}"
        )
    if expect.max_turn_latency_ms is not None and result.caller.latencies_ms:
        worst = max(result.caller.latencies_ms)
        if worst > expect.max_turn_latency_ms:
            turn = result.caller.latencies_ms.index(worst) + 1
            failures.append(
                f"expect.max_turn_latency_ms: {expect.max_turn_latency_ms}, "
                f"but the agent took {worst} ms to answer turn {turn}"
            )
    if expect.max_call_seconds is not None and result.call_seconds > expect.max_call_seconds:
        failures.append(
            f"expect.max_call_seconds: {expect.max_call_seconds:g}, but the call lasted {result.call_seconds:.1f} s"
        )
    if expect.min_call_seconds is not None and result.call_seconds < expect.min_call_seconds:
        failures.append(
            f"expect.min_call_seconds: {expect.min_call_seconds:g}, but the call lasted {result.call_seconds:.1f} s"
        )
    if not expect.refusals_allowed and (result.refusals or result.truncate_errors):
        failures.append(
            f"no refused requests or truncate errors: the model refused {result.refusals} response.create and "
            f"answered {result.truncate_errors} truncate with an error"
        )
    return result
