"""What the fake model does, beyond speaking a fixture: function calls scripted per caller utterance, and
the sizes of its audio deltas.

Function calls (docs/protocol.md §2, "Function calling"): ``FakeRealtimeServer(function_calls=...)`` maps
a caller fixture to the steps of the response that answers it::

    {"caller_book_table": [("check_availability", {"party_size": 2, "time": "19:30"})],
     "caller_goodbye": ["agent_goodbye", ("end_call", {})]}

A step is a call ``(name, arguments)`` — a dict is sent as its JSON text, a string as it is (malformed
arguments on purpose) — or, first only, a fixture the model says before its calls, in the same response.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voiceagent.testing.audio import FIXTURE_TEXTS

Step = str | tuple[str, Any]
DeltaMs = int | tuple[int, int]


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    name: str
    arguments: str  # the JSON text the model "writes" (possibly invalid)


@dataclass(frozen=True, slots=True)
class TurnScript:
    """The response to one caller utterance: optionally a fixture said first, then function calls."""

    say: str | None
    calls: tuple[ScriptedCall, ...]


def parse_scripts(function_calls: Mapping[str, Sequence[Step]] | None) -> dict[str, TurnScript]:
    """Check ``function_calls`` (see the module docstring); ``ValueError`` says what is wrong."""
    scripts: dict[str, TurnScript] = {}
    for heard, steps in (function_calls or {}).items():
        if not FIXTURE_TEXTS.get(heard):
            raise ValueError(f"function_calls: {heard!r} is not a fixture with words the fake could recognise")
        steps = list(steps)
        say = steps.pop(0) if steps and isinstance(steps[0], str) else None
        if say is not None and say not in FIXTURE_TEXTS:
            raise ValueError(f"function_calls[{heard!r}]: unknown fixture {say!r}")
        calls = tuple(_call(heard, step) for step in steps)
        if not calls:
            raise ValueError(f"function_calls[{heard!r}]: no call")
        scripts[heard] = TurnScript(say, calls)
    return scripts


def _call(heard: str, step: Any) -> ScriptedCall:
    if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str) and step[0]):
        raise ValueError(f"function_calls[{heard!r}]: {step!r} is not (name, arguments); a fixture may only come first")
    name, arguments = step
    return ScriptedCall(name, arguments if isinstance(arguments, str) else json.dumps(arguments))


def argument_deltas(arguments: str) -> list[str]:
    """The arguments in a few pieces, as the model streams them (at least one, even when empty)."""
    size = max(1, -(-len(arguments) // 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def delta_range(delta_ms: DeltaMs) -> tuple[int, int]:
    """``delta_ms`` as ``(shortest, longest)`` milliseconds, checked."""
    low, high = (delta_ms, delta_ms) if isinstance(delta_ms, int) else delta_ms
    if not 0 < low <= high:
        raise ValueError(f"delta_ms must be a positive number of ms or a (low, high) range, not {delta_ms!r}")
    return low, high


def delta_sizes(total_bytes: int, bytes_per_ms: int, delta_ms: tuple[int, int], rng: random.Random) -> list[int]:
    """Byte sizes of the audio deltas of a reply of ``total_bytes``: each ``delta_ms`` long (drawn at
    random within the range), the last one whatever is left."""
    sizes: list[int] = []
    left = total_bytes
    while left > 0:
        size = min(left, max(1, rng.randint(*delta_ms) * bytes_per_ms))
        sizes.append(size)
        left -= size
    return sizes or [0]
