"""``voiceagent eval --caller-voice model``: the caller's text turns read verbatim by a Realtime session.
Offline the bundled fake model reads them (espeak-ng through its text-to-speech path), reached by the same
client a real model is; only the endpoint differs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voiceagent.eval.voices import READER_INSTRUCTIONS, ModelVoice
from voiceagent.realtime.target import ModelTarget
from voiceagent.testing import FakeRealtimeServer
from voiceagent.testing.fake_realtime.reader import LineReader
from voiceagent.testing.speech import Speech

REPO = Path(__file__).resolve().parents[2]
LINE = "Hi, I would like to book a table for two tonight at eight."


async def test_the_model_reads_the_callers_line_verbatim_in_mulaw() -> None:
    speech = Speech()
    async with FakeRealtimeServer(api_key="reader-key", speed=50, director=LineReader(speech=speech)) as fake:
        voice = await ModelVoice.open(ModelTarget("azure", fake.endpoint, "gpt-realtime", "reader-key"), "alloy")
        try:
            audio = await voice.ulaw(LINE)
            again = await voice.ulaw(LINE)  # kept: a line is read once per run of eval
        finally:
            await voice.close()
        session = fake.sessions[0]
        assert session.effective["audio"]["output"]["format"]["type"] == "audio/pcmu"
        assert session.effective["instructions"] == READER_INSTRUCTIONS
        requests = [event for event in session.received if event["type"] == "response.create"]
        assert len(requests) == 1 and requests[0]["response"]["instructions"].endswith(": " + LINE)
        assert [response.text for response in session.responses] == [LINE]
        assert audio == again == bytes(session.produced[session.responses[0].item_id]) == speech.ulaw(LINE)
        assert fake.violations == [] and fake.self_violations == []


def test_eval_with_the_model_as_the_callers_voice_says_it_is_the_fake_and_passes(tmp_path: Path) -> None:
    scenario = REPO / "examples" / "restaurant" / "scenarios" / "goodbye.toml"
    done = subprocess.run(
        [sys.executable, "-m", "voiceagent", "eval", str(scenario), "--caller-voice", "model", "--out", "results"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    second = done.stdout.splitlines()[1]
    assert second.startswith("voiceagent eval: --caller-voice model: no account is configured")
    assert "bundled FAKE model" in second
    transcript = next((tmp_path / "results").glob("*.txt")).read_text()
    assert "Caller: That is all, thank you. Goodbye." in transcript  # the agent heard the line the model read
