"""The ``voiceagent`` command fails fast, naming what to set."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from voiceagent.config import ConfigError, load_settings
from voiceagent.realtime.connection import ModelConnectError, ModelConnection
from voiceagent.realtime.events import SessionConfig, SessionUpdated, UpdateSession
from voiceagent.realtime.target import ModelTarget


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "TWILIO_", "VOICEAGENT_"))}
    return subprocess.run(
        [sys.executable, "-m", "voiceagent", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_serve_without_azure_settings_exits_at_once_naming_them():
    result = run({}, "serve")
    assert result.returncode == 2
    assert "AZURE_OPENAI_ENDPOINT" in result.stderr and "AZURE_OPENAI_DEPLOYMENT" in result.stderr


COMPLETE_ENVIRONMENT = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
    "AZURE_OPENAI_API_KEY": "secret-key-value",
    "TWILIO_AUTH_TOKEN": "secret-auth-token",
}


def test_check_config_accepts_a_complete_environment():
    result = run(COMPLETE_ENVIRONMENT, "check-config")
    assert result.returncode == 0, result.stderr
    assert "azure ga gpt-realtime" in result.stdout
    assert "secret" not in result.stdout + result.stderr


def test_check_config_lists_every_problem_at_once() -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
        "AZURE_OPENAI_API_VERSION": "2024-10-01-preview",
        "PUBLIC_BASE_URL": "http://voice.example.com",
        "HOST": "0.0.0.0:8080",
    }
    result = run(env, "check-config")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    named = sorted(line[4:].split("=")[0].split(" ")[0] for line in problems)
    assert named == [
        "AZURE_OPENAI_API_VERSION",
        "AZURE_OPENAI_DEPLOYMENT",
        "HOST",
        "PUBLIC_BASE_URL",
        "TWILIO_AUTH_TOKEN",
    ]


def test_check_config_and_serve_name_a_tool_that_cannot_be_loaded() -> None:
    env = {**COMPLETE_ENVIRONMENT, "VOICEAGENT_TOOLS": "no_such_tools_module"}
    for command in ("check-config", "serve"):
        result = run(env, command)
        assert result.returncode == 2, (command, result.stderr)
        assert "tools configuration error" in result.stderr and "no_such_tools_module" in result.stderr
        assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- voiceagent fake-model


async def start_command(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "TWILIO_", "VOICEAGENT_"))}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voiceagent",
        *args,
        env={**clean, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(process: asyncio.subprocess.Process, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    """Read the process's output line by line until one matches ``pattern`` (bounded)."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while line := (await process.stdout.readline()).decode():
            seen.append(line)
            if found := re.search(pattern, line):
                return found
    raise AssertionError(f"no line matched {pattern!r}; the command printed:\n{''.join(seen)}")


async def test_fake_model_serves_the_realtime_protocol_until_sigterm() -> None:
    process = await start_command("fake-model", "--port", "0", "--api-key", "local-key")
    try:
        endpoint = (await read_until(process, r"AZURE_OPENAI_ENDPOINT=(http://127\.0\.0\.1:\d+)")).group(1)
        key = (await read_until(process, r"AZURE_OPENAI_API_KEY=(\S+)")).group(1)
        assert key == "local-key"
        target = ModelTarget(provider="azure", endpoint=endpoint, deployment="gpt-realtime", api_key=key)
        connection = await ModelConnection.open(target, timeout=10)
        try:
            await connection.send(UpdateSession(SessionConfig(instructions="Be brief.", voice="alloy")))
            async with asyncio.timeout(10):
                async for event in connection:
                    if isinstance(event, SessionUpdated):
                        break
            assert isinstance(event, SessionUpdated)
            assert (event.input_format, event.output_format) == ("pcmu", "pcmu")
        finally:
            await connection.close()
        with pytest.raises(ModelConnectError) as refused:  # it holds to its key, like the real service
            await ModelConnection.open(replace(target, api_key="wrong"), timeout=10)
        assert refused.value.status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await process.wait()
    assert code == 0
    assert process.stdout is not None
    assert "Stopped after 1 session(s)" in (await process.stdout.read()).decode()


def test_fake_model_names_a_port_it_cannot_take() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run({}, "fake-model", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr


# ---------------------------------------------------------------- voiceagent.env.example


ROOT = Path(__file__).resolve().parents[2]
SETTING = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
REQUIRED = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
    "AZURE_OPENAI_API_KEY": "k" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "PUBLIC_BASE_URL": "https://voice.example.com",
}


def example_settings() -> list[tuple[bool, str, str]]:
    """(commented out, name, value) of every VAR=value line of voiceagent.env.example."""
    lines = (ROOT / "voiceagent.env.example").read_text(encoding="utf-8").splitlines()
    return [(bool(m.group(1)), m.group(2), m.group(3)) for m in map(SETTING.match, lines) if m]


def test_the_env_example_has_every_variable_the_readme_documents_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[A-Z][A-Z0-9_]*`(?: / `[A-Z][A-Z0-9_]*`)*) \|", readme, flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)}
    assert len(documented) > 40
    in_example = [name for _, name, _ in example_settings()]
    assert len(in_example) == len(set(in_example))  # each once
    assert sorted(documented - set(in_example)) == []
    assert sorted(name for name in in_example if f"`{name}`" not in readme) == []


def test_the_env_examples_defaults_are_the_services_defaults() -> None:
    config = (ROOT / "voiceagent" / "config.py").read_text(encoding="utf-8")
    baseline = load_settings(REQUIRED)
    checked = 0
    for commented, name, value in example_settings():
        if commented and value and f'"{name}"' in config:
            changed = load_settings({**REQUIRED, name: value})
            assert changed.model_dump() == baseline.model_dump(), f"{name}={value} is not the default"
            checked += 1
    assert checked > 20


def test_the_env_example_as_shipped_names_what_must_be_filled_in() -> None:
    shipped = {name: value for commented, name, value in example_settings() if not commented}
    assert set(shipped) == set(REQUIRED) and not any(shipped.values())
    with pytest.raises(ConfigError) as refused:
        load_settings(shipped)
    assert "AZURE_OPENAI_ENDPOINT" in str(refused.value) and "TWILIO_AUTH_TOKEN" in str(refused.value)


def test_calls_needs_only_the_store_and_names_it_when_there_is_none(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AZURE_", "OPENAI_", "TWILIO_"))}
    env["VOICEAGENT_DATABASE_URL"] = f"sqlite:///{tmp_path}/none.db"  # no model, no Twilio: not needed
    done = subprocess.run(
        [sys.executable, "-m", "voiceagent", "calls", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "VOICEAGENT_DATABASE_URL" in done.stderr


def test_the_command_line_habits_a_newcomer_expects() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VOICEAGENT_", "AZURE_"))}
    version = run(env, "--version")
    assert version.returncode == 0 and re.fullmatch(r"voiceagent \S+\n", version.stdout)
    bare = run(env)  # no command: the list of commands, not a usage error
    assert bare.returncode == 0 and "serve" in bare.stdout and "check-config" in bare.stdout and not bare.stderr
    shown = run(env, "calls", "export", "--help").stdout
    assert "jsonl: one {call, transcript} object per line" in shown


def test_an_export_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    from voiceagent.store import CallRecord, CallStore, RecordsSettings

    settings = RecordsSettings.sqlite(tmp_path / "calls.db")
    store = CallStore(settings)
    store.open()
    for n in range(3000):  # more than a pipe holds
        store.call_started(CallRecord(call_sid=f"CA{n:032x}", instance="test:1", started_at=float(n)))
    assert store.flush(30)
    store.close()
    env = {**os.environ, "VOICEAGENT_DATABASE_URL": settings.database_url}
    result = subprocess.run(
        f"{sys.executable} -m voiceagent calls export | head -1",
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.startswith('{"call"') and result.stdout.count("\n") == 1
    assert result.stderr == "", result.stderr  # no BrokenPipeError traceback


def test_a_simulated_caller_refuses_a_speed_the_service_would_drop() -> None:
    result = run({"TWILIO_AUTH_TOKEN": "t" * 32}, "call", "--wav", "nothing.wav", "--speed", "4")
    assert result.returncode == 2
    assert "faster than the service accepts (VOICEAGENT_CALLER_AUDIO_PACE=1.25" in result.stderr
    fast = run(
        {"TWILIO_AUTH_TOKEN": "t" * 32, "VOICEAGENT_CALLER_AUDIO_PACE": "8"}, "call", "--wav", "x", "--speed", "4"
    )
    assert "faster than the service accepts" not in fast.stderr  # a service told to take it: goes on (to the WAV)
