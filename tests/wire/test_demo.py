"""``voiceagent demo``: a whole scripted call on loopback with no configuration, its live transcript and
the WAV of what it sounded like."""

from __future__ import annotations

import io
import json
import os
import wave
from pathlib import Path

import pytest

from voiceagent.demo import run_demo
from voiceagent.simulated_call import peak_dbfs, read_wav_as_ulaw
from voiceagent.testing import FIXTURE_TEXTS, load_fixture

SPEED = 16.0  # the fakes' speed factor: the 22 s call takes about 2 s


async def test_the_demo_plays_a_whole_call_with_a_barge_in_and_writes_what_it_sounded_like(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):  # nothing from the environment: the demo builds its own settings
        if name.startswith(("AZURE_", "OPENAI_", "TWILIO_", "VOICEAGENT_", "PUBLIC_BASE_URL")) or name in ("PORT",):
            monkeypatch.delenv(name)
    out, log = tmp_path / "heard.wav", tmp_path / "service.log"
    printed = io.StringIO()

    result = await run_demo(out=out, log_file=log, speed=SPEED, stream=printed)

    # the transcript: both sides, in order, with the barge-in and how much of the answer was heard
    said = [(line.role, line.text, line.interrupted) for line in result.lines]
    assert said[0] == ("agent", FIXTURE_TEXTS["agent_greeting"], False)
    assert said[1] == ("caller", FIXTURE_TEXTS["caller_book_table"], False)
    assert said[2][0] == "agent" and said[2][2] is True
    assert FIXTURE_TEXTS["agent_reply_long"].startswith(said[2][1])
    assert said[3] == ("caller", FIXTURE_TEXTS["caller_interrupt"] + " " + FIXTURE_TEXTS["caller_goodbye"], False)
    assert said[4] == ("agent", FIXTURE_TEXTS["agent_goodbye"], False)
    [heard_ms] = result.barge_ins
    assert 2000 <= heard_ms <= 4500  # the caller talked over the answer three seconds in
    assert result.lines[2].heard_ms == heard_ms
    assert result.problems == []

    # printed for a person as it happened: who speaks, the barge-in; no JSON on the terminal
    text = printed.getvalue()
    assert "Caller: " + FIXTURE_TEXTS["caller_book_table"] in text
    assert "Agent: " + FIXTURE_TEXTS["agent_greeting"] in text
    assert f"heard {heard_ms} ms" in text and "barge-in" in text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines())
    assert text.index("Agent: Thank you for calling") < text.index("barge-in") < text.index("Agent: You're welcome")

    # the service's own log went to the file, as JSON, with the barge-in and the call's summary
    events = [json.loads(line)["event"] for line in log.read_text(encoding="utf-8").splitlines()]
    assert "barge_in" in events and "call_ended" in events

    # the WAV: 16-bit PCM at 8 kHz, as long as the call, loud where the agent spoke
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        seconds = wav.getnframes() / 8000
    assert result.wav == out
    assert abs(seconds - result.call_seconds) < 0.5
    # the caller heard the greeting, the start of the answer and the goodbye; the truncation never claims
    # more of the answer than was played, and trails it by less than the audio between two marks
    of_the_answer = result.heard_bytes - len(load_fixture("agent_greeting")) - len(load_fixture("agent_goodbye"))
    assert -8 < of_the_answer - heard_ms * 8 < 250 * 8  # (heard_ms is whole milliseconds)
    assert peak_dbfs(read_wav_as_ulaw(out)) > -20


def test_the_demo_touches_nothing_of_a_real_environment(tmp_path: Path) -> None:
    """A shell that loaded a real voiceagent.env: the demo must not write to its store, post to its webhook
    or record, and leaves nothing behind in the working directory but what it says it wrote."""
    import socket
    import subprocess
    import sys

    with socket.socket() as listener:  # a webhook receiver that would see any POST
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.1)
        hostile = {
            **os.environ,
            "VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'real' / 'calls.db'}",
            "VOICEAGENT_CALL_ENDED_WEBHOOK": f"http://127.0.0.1:{listener.getsockname()[1]}/hook",
            "VOICEAGENT_WEBHOOK_SECRET": "9f2c4e1a7b3d5f60a8c2e4b6d8f01357",
            "VOICEAGENT_RECORDINGS": "yes",
            "VOICEAGENT_RECORDINGS_DIR": str(tmp_path / "real" / "recordings"),
        }
        work = tmp_path / "work"
        work.mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "voiceagent", "demo", "--speed", str(SPEED), "--log", "demo.log"],
            cwd=work,
            env=hostile,
            capture_output=True,
            text=True,
            timeout=120,
        )
        try:
            listener.accept()
            posted = True
        except TimeoutError:
            posted = False
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "real").exists() and not posted
    assert sorted(path.name for path in work.iterdir()) == ["demo-heard.wav", "demo.log"]
    transcript = [json.loads(line) for line in (work / "demo.log").read_text().splitlines()]
    assert sum(line["event"] == "transcript" for line in transcript) == 5  # every utterance is logged
    assert "temporary store, now deleted" in result.stdout
