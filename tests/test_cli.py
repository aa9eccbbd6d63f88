"""The ``voiceagent`` command fails fast, naming what to set."""

from __future__ import annotations

import os
import subprocess
import sys


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "TWILIO_", "VOICEAGENT_"))}
    return subprocess.run(
        [sys.executable, "-m", "voiceagent", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_serve_without_azure_settings_exits_at_once_naming_them():
    result = run({}, "serve")
    assert result.returncode == 2
    assert "AZURE_OPENAI_ENDPOINT" in result.stderr and "AZURE_OPENAI_DEPLOYMENT" in result.stderr


def test_check_config_accepts_a_complete_environment():
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        "AZURE_OPENAI_API_KEY": "secret-key-value",
        "TWILIO_AUTH_TOKEN": "secret-auth-token",
    }
    result = run(env, "check-config")
    assert result.returncode == 0, result.stderr
    assert "azure ga gpt-realtime" in result.stdout
    assert "secret" not in result.stdout + result.stderr
