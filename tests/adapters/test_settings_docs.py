"""The README's variable tables and voiceagent.env.example say what the one declaration says: the same
variables, the same defaults."""

from __future__ import annotations

import re
from pathlib import Path

from voiceagent.config import Settings
from voiceagent.variables import env_default, unquoted

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {name: env_default(info) for name, info in Settings.variables().items()}
ROW = re.compile(r"^\| ((?:`[A-Z][A-Z0-9_]*`)(?: / `[A-Z][A-Z0-9_]*`)*) \| ([^|]*) \|", re.MULTILINE)
LINE = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)
SHOWN_IN_FULL = 80  # longer defaults (the prompt) are described, not quoted


def readme_defaults() -> dict[str, str]:
    found: dict[str, str] = {}
    for names, defaults in ROW.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        listed, cells = re.findall(r"`([A-Z0-9_]+)`", names), defaults.strip().split(" / ")
        if len(cells) != len(listed):
            cells = [defaults.strip()] * len(listed)
        found |= dict(zip(listed, cells, strict=True))
    return found


def example_defaults() -> dict[str, str]:
    text = (ROOT / "voiceagent.env.example").read_text(encoding="utf-8")
    found = LINE.findall(text)
    assert len(found) == len({name for name, _ in found})  # each once
    return {name: unquoted(value) for name, value in found}


def test_the_readme_tables_document_exactly_the_declared_variables() -> None:
    assert sorted(set(readme_defaults()) ^ set(DECLARED)) == []


def test_the_env_example_holds_exactly_the_declared_variables() -> None:
    assert sorted(set(example_defaults()) ^ set(DECLARED)) == []


def test_the_readme_shows_the_declared_defaults() -> None:
    wrong = []
    for name, cell in readme_defaults().items():
        default = DECLARED.get(name)
        if default is None:
            ok = not cell.startswith("`")  # "unset", "—", a description: not a value
        else:
            abridged = cell.strip('"').removesuffix("…")  # "Sorry, all our lines are busy…"
            ok = (
                len(default) > SHOWN_IN_FULL
                or cell.startswith(f"`{default}`")
                or (cell.endswith('…"') and default.startswith(abridged))
            )
        if not ok:
            wrong.append(f"{name}: README says {cell!r}, the declaration {default!r}")
    assert wrong == []


def test_the_env_example_shows_the_declared_defaults() -> None:
    wrong = [
        f"{name}: the example says {value!r}, the declaration {DECLARED.get(name)!r}"
        for name, value in example_defaults().items()
        if value != (DECLARED.get(name) or "") and not (value == "" and len(DECLARED.get(name) or "") > SHOWN_IN_FULL)
    ]
    assert wrong == []


def test_every_variable_says_what_it_is_for() -> None:
    assert [name for name, info in Settings.variables().items() if not info.description] == []
