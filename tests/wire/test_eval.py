"""``voiceagent eval`` as an operator runs it: the restaurant's scenarios against the fake model, in a
subprocess; and a scenario made to fail says which expectation, at which turn, and what happened."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from voiceagent.eval.agent import serve_scenario
from voiceagent.eval.caller_model import CallerModel
from voiceagent.eval.run import run_once
from voiceagent.eval.scenario import load_scenario
from voiceagent.eval.score import score
from voiceagent.testing.speech import Speech

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


async def test_a_persona_caller_talks_with_the_agent_two_models_on_one_phone_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persona scenario in process, checked on the fakes' own accounting: the caller model (the fake,
    reached by the service's own Realtime client) heard the agent's audio and answered each of its turns,
    the agent heard the caller model's words, and the call ended as the scenario expects."""
    scenario = load_scenario(SCENARIOS / "persona_books_a_table.toml")
    assert scenario.caller.persona is not None
    lines = scenario.caller.persona.fake_lines
    monkeypatch.setenv("RESTAURANT_DB", str(tmp_path / "restaurant.sqlite3"))  # restored afterwards
    monkeypatch.syspath_prepend(str(SCENARIOS.parent))
    speech = Speech()
    caller_model = CallerModel(scenario, {}, 4.0, speech)
    async with serve_scenario(scenario, {}, tmp_path, speed=4.0, speech=speech) as agent, caller_model as target:
        run = run_once(scenario, 1, out=tmp_path, speech=speech, agent=agent, persona_target=target, speed=4.0)
        result = score(await run)
        assert agent.fake is not None and caller_model.fake is not None
        agent_session, persona_session = agent.fake.sessions[0], caller_model.fake.sessions[0]

        assert result.passed, result.failures
        assert result.ending == "hangup" and [tool.name for tool in result.tools][-1] == "end_call"
        # the caller model: a μ-law, server-VAD session that heard the agent's greeting on the line...
        assert persona_session.effective["audio"]["input"]["format"]["type"] == "audio/pcmu"
        assert persona_session.effective["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        greeting = bytes(agent_session.produced[agent_session.responses[0].item_id])
        assert _middle(greeting) in persona_session.audio_received
        # ...and answered each of the agent's turns on its own (server VAD), with the persona's lines
        spoke = [response for response in persona_session.responses if response.text]
        assert [response.text for response in spoke] == lines
        assert all(response.origin == "vad" for response in spoke)
        assert result.caller.persona_lines == lines  # as the client heard them: the caller model's transcript
        user_turns = [item for item in persona_session.conversation if item.get("role") == "user"]
        assert len(user_turns) >= len(lines)
        # the agent heard those words: its fake recognised each answer in the caller's audio
        assert list(agent_session.heard_words.values()) == lines
        for response in spoke:
            assert _middle(bytes(response.produced)) in agent_session.audio_received
        assert agent.fake.violations == [] and caller_model.fake.violations == []
        assert caller_model.fake.self_violations == []


def _middle(audio: bytes) -> bytes:
    """A stretch of speech from the middle of ``audio`` (its ends are silence, which runs on in a call)."""
    return audio[len(audio) // 3 : len(audio) // 3 + 1600]
