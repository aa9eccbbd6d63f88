"""``voiceagent eval`` as an operator runs it: the restaurant's scenarios against the fake model, in a
subprocess; and a scenario made to fail says which expectation, at which turn, and what happened."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "examples" / "restaurant" / "scenarios"


def _eval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "voiceagent", "eval", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_restaurant_scenarios_pass_against_the_fake_model(tmp_path: Path) -> None:
    done = _eval(str(SCENARIOS), "--out", "results", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert "against the bundled fake model" in first
    out = tmp_path / "results"
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("tests") == str(len(list(SCENARIOS.glob("*.toml")))) and suite.get("failures") == "0"
    report = (out / "report.md").read_text()
    assert "| book a table" in report and "FAILED" not in report
    assert len(list(out.glob("*.wav"))) == len(list(SCENARIOS.glob("*.toml")))
    transcript = (out / "book-a-table-1.txt").read_text()
    assert "Agent: Trattoria Luca, good evening! How can I help?" in transcript  # the configured greeting


def test_a_wrong_expected_tool_fails_naming_the_expectation_the_turn_and_what_happened(tmp_path: Path) -> None:
    wrong = (
        (SCENARIOS / "book_table.toml")
        .read_text()
        .replace('{ name = "check_availability", arguments = { party_size = 2 } }', '{ name = "update_booking" }')
    )
    scenario = tmp_path / "wrong.toml"
    scenario.write_text(
        wrong.replace('"../prompt.txt"', f'"{SCENARIOS.parent / "prompt.txt"}"').replace(
            'python_path = [".."]', f'python_path = ["{SCENARIOS.parent}"]'
        )
    )
    done = _eval(str(scenario), "--out", "results", cwd=tmp_path)
    assert done.returncode == 1
    assert (
        "expect.tools[0]: update_booking() was not called; at turn 1 (say 'Hi, I would like to book a table for "
        "two tonight at eight.') the agent called check_availability(" in done.stdout
    ), done.stdout


def test_a_scenario_error_names_the_file_the_field_and_the_line(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('name = "bad"\n\n[[caller.turns]]\nsay = "hi"\n\n[[caller.turns]]\npress = "x"\n')
    done = _eval(str(scenario), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{scenario}:7: caller.turns[1].press" in done.stdout, done.stdout
