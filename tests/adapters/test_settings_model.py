"""The one settings model: every problem at once, misspelt names caught, flags alike, --env-file read as a
dotenv file (the process environment winning), and nothing read from ``os.environ`` behind the caller's back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voiceagent import cli
from voiceagent.app import create_app
from voiceagent.config import ConfigError, load_settings
from voiceagent.store.settings import RecordsSettings
from voiceagent.variables import read_environment

AZURE = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
    "AZURE_OPENAI_API_KEY": "k" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
}
HOSTILE = {  # a developer's shell that loaded the real voiceagent.env
    "VOICEAGENT_DATABASE_URL": "postgresql://prod:hunter2@db.example.com:5432/calls",
    "VOICEAGENT_CALL_ENDED_WEBHOOK": "https://hooks.example.com/real",
    "VOICEAGENT_WEBHOOK_SECRET": "s" * 32,
    "VOICEAGENT_RECORDINGS": "yes",
    "VOICEAGENT_API_TOKEN": "a" * 32,
}


def refusal(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    return refused.value


def test_a_misspelt_variable_is_refused_naming_the_closest_known_one() -> None:
    problem = refusal({**AZURE, "VOICEAGENT_MAXCALLS": "5"})
    assert str(problem) == "unknown variable VOICEAGENT_MAXCALLS (did you mean VOICEAGENT_MAX_CALLS?)"
    assert "VOICEAGENT_RECORDING_DIR" in str(refusal({**AZURE, "VOICEAGENT_RECORDING_DIR": "x"}))
    assert "voiceagent config --list" in str(refusal({**AZURE, "VOICEAGENT_ZZZ": "1"}))
    load_settings({**AZURE, "VOICEAGENT_TEST_POSTGRES_URL": "postgresql://h/db", "OTHER_THING": "x"})  # not ours


def test_records_problems_come_with_the_others_all_at_once() -> None:
    problem = refusal(
        {**AZURE, "VOICEAGENT_MAX_CALLS": "abc", "VOICEAGENT_RECORDINGS": "maybe", "VOICEAGENT_API_TOKEN": "short"}
    )
    assert str(problem).startswith("3 problems in the configuration:")
    named = sorted(p.split("=")[0].split(" ")[0] for p in problem.problems)
    assert named == ["VOICEAGENT_API_TOKEN", "VOICEAGENT_MAX_CALLS", "VOICEAGENT_RECORDINGS"]
    assert "short" not in str(problem)  # a secret is never echoed, even a wrong one


@pytest.mark.parametrize(
    ("word", "meaning"),
    [(w, True) for w in ("true", "YES", "on", "1")] + [(w, False) for w in ("false", "No", "off", "0")],
)
def test_every_flag_takes_the_same_words(word: str, meaning: bool) -> None:
    flags = ("VOICEAGENT_RECORDINGS", "VOICEAGENT_END_CALL", "VOICEAGENT_LOG_FULL_NUMBERS")
    settings = load_settings({**AZURE, **dict.fromkeys(flags, word)})
    assert (settings.records.recordings, settings.end_call, settings.log_full_numbers) == (meaning,) * 3


def test_the_records_are_read_with_the_settings_from_the_same_mapping(tmp_path: Path) -> None:
    settings = load_settings({**AZURE, "VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "PORT": "9001"})
    assert settings.records == RecordsSettings.from_env(
        {"VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "PORT": "9001"}
    )
    assert settings.records.instance.endswith(":9001")


def test_the_app_takes_its_records_from_the_settings_not_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(AZURE)
    records = create_app(settings).state.service.records
    assert records == settings.records and records.backend == "sqlite"
    assert records.call_ended_webhook is None and not records.recordings and records.api_token is None


GREETING = "Thanks for calling the Riverside Bistro, how can I help?"


def write_env_file(path: Path) -> Path:
    path.write_text(
        "# a comment\n"
        + "".join(f"{name}={value}\n" for name, value in AZURE.items())
        + f'VOICEAGENT_GREETING="{GREETING}"\n'
        + "VOICEAGENT_BUSY_MESSAGE=All lines are busy, sorry  # unquoted, with a trailing comment\n"
        + "VOICEAGENT_MAX_CALLS=7\n",
        encoding="utf-8",
    )
    return path


def test_an_env_file_with_spaces_in_values_reaches_the_settings(tmp_path: Path) -> None:
    env_file = write_env_file(tmp_path / "voiceagent.env")
    settings = load_settings(read_environment({}, str(env_file)))
    assert settings.greeting == GREETING and settings.busy_message == "All lines are busy, sorry"
    assert settings.max_calls == 7
    assert load_settings(read_environment({"VOICEAGENT_MAX_CALLS": "9"}, str(env_file))).max_calls == 9  # env wins


def test_docker_run_env_file_quotes_mean_the_same(tmp_path: Path) -> None:
    # `docker run --env-file` passes VOICEAGENT_GREETING="Hello there" with its quotes
    assert load_settings({**AZURE, "VOICEAGENT_GREETING": f'"{GREETING}"'}).greeting == GREETING


def test_check_config_reads_the_env_file_and_says_how_it_signs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = write_env_file(tmp_path / "voiceagent.env")
    text = env_file.read_text(encoding="utf-8").replace(f"AZURE_OPENAI_API_KEY={'k' * 32}", "AZURE_OPENAI_API_KEY=")
    env_file.write_text(text, encoding="utf-8")
    monkeypatch.setattr(os, "environ", {})  # the only place the CLI reads the process environment
    assert cli.main(["check-config", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out and "no key: signing in with Entra ID via DefaultAzureCredential" in out
    assert cli.main(["--env-file", str(tmp_path / "missing.env"), "check-config"]) == 2
    assert "--env-file" in capsys.readouterr().err


def test_check_config_fails_on_a_misspelt_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(os, "environ", {**AZURE, "VOICEAGENT_MAXCALLS": "5"})
    assert cli.main(["check-config"]) == 2
    assert "did you mean VOICEAGENT_MAX_CALLS?" in capsys.readouterr().err


def test_config_list_prints_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "VOICEAGENT_MAX_CALLS=50\tconcurrent calls" in lines
    assert any(line.startswith("VOICEAGENT_DATABASE_URL=sqlite:///./voiceagent.db\t") for line in lines)
