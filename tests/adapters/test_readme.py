"""The README is the front door: it must document every variable the service reads and name the
test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_environment_variable_is_documented():
    modules = [path for path in (ROOT / "voiceagent").rglob("*.py") if "testing" not in path.parts]
    source = "\n".join(path.read_text(encoding="utf-8") for path in modules)
    variables = {
        name
        for name in re.findall(r'"((?:AZURE|OPENAI|TWILIO|VOICEAGENT|PUBLIC|HOST|PORT)_?[A-Z_]*)"', source)
        if not name.endswith("_")
    }
    assert len(variables) > 25
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(v for v in variables if f"`{v}`" not in readme and f"`{v} " not in readme)
    assert missing == []


def test_ci_runs_the_test_command_the_readme_gives():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[dev]' && python -m pytest" in readme
    assert "python3 -m pytest" in ci or "python -m pytest" in ci


def test_every_docker_run_gives_the_drain_time_to_finish() -> None:
    """Docker's own stop timeout is 10 s: shorter than the 30 s drain, so callers would be cut off."""
    for name in ("README.md", "Dockerfile"):
        runs = [line for line in (ROOT / name).read_text(encoding="utf-8").splitlines() if "docker run" in line]
        assert runs, name
        for line in runs:
            assert "--stop-timeout 45" in line, (name, line)


def test_the_readme_names_the_field_api_errors_carry() -> None:
    from voiceagent.operator_auth import error

    body = bytes(error(400, "why").body)
    assert body == b'{"error":"why"}'
    assert "API errors are JSON with an `error`" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_leads_with_a_picture_then_the_account_free_demo_and_ends_with_the_reference() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Hear it in a minute", "## Set-up: two commands", "## From clone to a ringing phone"]
    assert text.index("```mermaid") < text.index("## Hear it in a minute") < text.index("# Reference")
    assert text.index("# Reference") < text.index("## Configuration")
    before_demo = text[: text.index("## Hear it in a minute")]
    assert len(before_demo.split()) < 400  # what it is, a picture, the way in: not 5,500 words
    assert "variables of [Configuration](#configuration)" in text  # the set-up points at the variables
