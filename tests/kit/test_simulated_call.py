"""``voiceagent call``: a simulated Twilio caller against a running instance, and the WAV handling it
relies on (any common WAV in, 16-bit PCM WAV out)."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import pytest

from tests.helpers import environment_without_credentials, run_voiceagent
from voiceagent.simulated_call import (
    WavError,
    mix,
    peak_dbfs,
    read_wav_as_ulaw,
    wav_to_ulaw,
    write_wav,
)
from voiceagent.testing import (
    TEST_AUTH_TOKEN,
    FakeRealtimeServer,
    app_environment,
    load_fixture,
    serve_app,
    silence,
)


def tone(rate: int, seconds: float, channels: int = 1, width: int = 2, amplitude: float = 0.5) -> bytes:
    """A 440 Hz tone as raw little-endian samples (8-bit ones unsigned, as WAV stores them)."""
    frames = bytearray()
    for n in range(int(rate * seconds)):
        value = amplitude * math.sin(2 * math.pi * 440 * n / rate)
        if width == 1:
            sample = bytes([int(128 + 127 * value)])
        else:
            full = 2 ** (8 * width - 1) - 1
            sample = int(value * full).to_bytes(width, "little", signed=True)
        frames += sample * channels
    return bytes(frames)


def pcm_wav(path: Path, rate: int, channels: int, width: int, seconds: float = 0.5) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(tone(rate, seconds, channels, width))
    return path


def ulaw_wav(audio: bytes) -> bytes:
    """A G.711 μ-law WAV file (format 7), which ``wave`` cannot write."""
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8) + b"\x00\x00"
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(audio)) + audio
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [(8000, 1, 2), (16000, 1, 2), (24000, 1, 2), (44100, 2, 2), (48000, 2, 2), (22050, 1, 1), (44100, 2, 3)],
)
def test_any_common_wav_becomes_8khz_ulaw_of_the_same_length_and_loudness(tmp_path, rate, channels, width) -> None:
    ulaw = read_wav_as_ulaw(pcm_wav(tmp_path / "in.wav", rate, channels, width, seconds=0.5))
    assert abs(len(ulaw) - 4000) <= 8  # 0.5 s at 8 bytes per millisecond
    assert peak_dbfs(ulaw) == pytest.approx(-9.0, abs=0.6)  # a sine at half scale: RMS -9 dBFS


def test_ulaw_wavs_pass_through_unchanged_and_wav_output_round_trips(tmp_path) -> None:
    audio = load_fixture("caller_interrupt")
    assert wav_to_ulaw(ulaw_wav(audio)) == audio
    written = write_wav(tmp_path / "out.wav", audio)
    with wave.open(str(written)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (
            1,
            2,
            8000,
            len(audio),
        )
    assert read_wav_as_ulaw(written) == audio  # μ-law → 16-bit → μ-law: exact for this recording


def test_what_is_not_a_wav_is_named(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not audio", encoding="utf-8")
    with pytest.raises(WavError, match=r"notes\.txt: not a WAV file"):
        read_wav_as_ulaw(tmp_path / "notes.txt")
    with pytest.raises(WavError, match="missing.wav"):
        read_wav_as_ulaw(tmp_path / "missing.wav")


def test_mixing_keeps_both_sides() -> None:
    speech = load_fixture("caller_goodbye")
    mixed = mix(speech, silence(100))
    assert len(mixed) == len(speech)
    assert peak_dbfs(mixed) == pytest.approx(peak_dbfs(speech), abs=0.5)


# ---------------------------------------------------------------- the command, against a local instance


async def run_call(*args: str, token: str = TEST_AUTH_TOKEN, timeout: float = 60.0) -> tuple[int, str, str]:
    # the caller is told the service's pace (app_environment's 32x), as an operator's env file would
    return await run_voiceagent(
        "call",
        *args,
        env=environment_without_credentials(TWILIO_AUTH_TOKEN=token, VOICEAGENT_CALLER_AUDIO_PACE="32"),
        timeout=timeout,
    )


async def test_a_simulated_call_records_the_agents_answer_and_exits_0(tmp_path) -> None:
    question = write_wav(tmp_path / "question.wav", load_fixture("caller_book_table"))
    out = tmp_path / "heard.wav"
    async with FakeRealtimeServer(speed=32, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            code, stdout, stderr = await run_call(
                "--wav", str(question), "--url", app.base_url, "--out", str(out), "--speed", "8"
            )
            assert code == 0, stdout + stderr
            [session] = model.sessions

    # the service heard the question (the fake recognised the words) and the caller heard the answer
    assert ("caller", "Hi, I would like to book a table for two people tonight at eight.") in [
        (line.role, line.text) for line in app.transcripts.lines
    ]
    # (where the caller's buffer ran dry for a moment, Twilio would have played silence: so does the file)
    heard = sound_of(read_wav_as_ulaw(out))
    greeting = sound_of(as_written(tmp_path, load_fixture("agent_greeting")))
    answer = sound_of(as_written(tmp_path, load_fixture("agent_goodbye")))
    assert answer in heard and greeting in heard
    assert heard.index(greeting) < heard.index(answer)
    assert model.violations == []
    assert "greeting heard" in stdout and "the agent speaks" in stdout and str(out) in stdout
    everything = len(load_fixture("agent_greeting")) + len(load_fixture("agent_goodbye"))
    assert f"heard {everything / 8000:.1f} s of the agent ({everything:,} bytes" in stdout


def sound_of(ulaw: bytes) -> bytes:
    """The audio without its silent samples (μ-law codes for zero)."""
    return ulaw.replace(b"\xff", b"").replace(b"\x7f", b"")


def as_written(tmp_path: Path, ulaw: bytes) -> bytes:
    """μ-law as it reads back from a 16-bit WAV (the codes for ±0 and ±2 collapse)."""
    return read_wav_as_ulaw(write_wav(tmp_path / "roundtrip.wav", ulaw))


async def test_a_call_signed_with_the_wrong_token_is_refused_and_says_why(tmp_path) -> None:
    question = write_wav(tmp_path / "question.wav", load_fixture("caller_goodbye"))
    async with FakeRealtimeServer() as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            code, stdout, stderr = await run_call("--wav", str(question), "--url", app.base_url, token="not-the-token")
    assert code == 1
    assert "HTTP 403" in stderr and "PUBLIC_BASE_URL" in stderr and "TWILIO_AUTH_TOKEN" in stderr
    assert model.sessions == []


async def test_a_call_to_nothing_says_the_service_is_unreachable(tmp_path) -> None:
    question = write_wav(tmp_path / "question.wav", load_fixture("caller_goodbye"))
    code, _stdout, stderr = await run_call("--wav", str(question), "--url", "http://127.0.0.1:9", timeout=30)
    assert code == 1 and "cannot reach http://127.0.0.1:9" in stderr
