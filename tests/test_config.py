"""Settings from the environment: defaults, dialect choice, and errors that name the variable."""

from __future__ import annotations

import pytest

from voiceagent.config import ConfigError, configuration_warnings, load_settings

AZURE = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
    "AZURE_OPENAI_API_KEY": "k" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
}


def test_azure_defaults_to_the_ga_protocol():
    settings = load_settings(AZURE)
    assert settings.model.provider == "azure" and settings.model.dialect == "ga"
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.session.vad == "server_vad" and settings.session.transcription_model == "whisper-1"
    assert settings.greeting == ""


def test_an_api_version_selects_the_preview_protocol():
    settings = load_settings({**AZURE, "AZURE_OPENAI_API_VERSION": "2024-10-01-preview"})
    assert settings.model.dialect == "preview" and settings.model.api_version == "2024-10-01-preview"


def test_without_an_api_key_azure_uses_entra_id():
    env = {k: v for k, v in AZURE.items() if k != "AZURE_OPENAI_API_KEY"}
    assert load_settings(env).model.api_key is None


def test_plain_openai_when_no_azure_endpoint():
    settings = load_settings({"OPENAI_API_KEY": "sk-" + "x" * 20, "TWILIO_AUTH_TOKEN": "t" * 32})
    assert settings.model.provider == "openai" and settings.model.deployment == "gpt-realtime"
    assert settings.model.endpoint == "https://api.openai.com"


def test_secrets_stay_out_of_reprs():
    text = repr(load_settings(AZURE))
    assert "k" * 32 not in text and "t" * 32 not in text


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({**AZURE, "AZURE_OPENAI_ENDPOINT": "res.openai.azure.com"}, "AZURE_OPENAI_ENDPOINT"),
        ({**AZURE, "PORT": "eighty"}, "PORT"),
        ({**AZURE, "PORT": "70000"}, "PORT"),
        ({**AZURE, "VOICEAGENT_VOICE": "robot"}, "VOICEAGENT_VOICE"),
        ({**AZURE, "VOICEAGENT_VAD": "push_to_talk"}, "VOICEAGENT_VAD"),
        ({**AZURE, "VOICEAGENT_VAD_THRESHOLD": "1.5"}, "VOICEAGENT_VAD_THRESHOLD"),
        ({**AZURE, "VOICEAGENT_VAD_SILENCE_MS": "-1"}, "VOICEAGENT_VAD_SILENCE_MS"),
        ({**AZURE, "VOICEAGENT_VAD_PREFIX_PADDING_MS": "x"}, "VOICEAGENT_VAD_PREFIX_PADDING_MS"),
        ({**AZURE, "VOICEAGENT_INSTRUCTIONS_FILE": "/nonexistent/prompt.txt"}, "VOICEAGENT_INSTRUCTIONS_FILE"),
        ({**AZURE, "VOICEAGENT_INSTRUCTIONS": "a", "VOICEAGENT_INSTRUCTIONS_FILE": "b"}, "VOICEAGENT_INSTRUCTIONS"),
        ({**AZURE, "PUBLIC_BASE_URL": "voice.example.com"}, "PUBLIC_BASE_URL"),
        ({k: v for k, v in AZURE.items() if k != "TWILIO_AUTH_TOKEN"}, "TWILIO_AUTH_TOKEN"),
        (
            {**AZURE, "VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION": "maybe"},
            "VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION",
        ),
        ({**AZURE, "VOICEAGENT_MAX_CALLS": "0"}, "VOICEAGENT_MAX_CALLS"),
        (
            {**AZURE, "AZURE_OPENAI_API_VERSION": "2024-10-01-preview", "VOICEAGENT_VAD": "semantic_vad"},
            "VOICEAGENT_VAD",
        ),
    ],
)
def test_invalid_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_instructions_from_a_file(tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You take table bookings for the Riverside Bistro.\n", encoding="utf-8")
    settings = load_settings({**AZURE, "VOICEAGENT_INSTRUCTIONS_FILE": str(prompt)})
    assert settings.session.instructions == "You take table bookings for the Riverside Bistro."


def test_operator_settings_reach_the_session():
    settings = load_settings(
        {
            **AZURE,
            "VOICEAGENT_VOICE": "marin",
            "VOICEAGENT_VAD": "semantic_vad",
            "VOICEAGENT_VAD_THRESHOLD": "0.6",
            "VOICEAGENT_VAD_PREFIX_PADDING_MS": "200",
            "VOICEAGENT_VAD_SILENCE_MS": "700",
            "VOICEAGENT_TRANSCRIPTION_MODEL": "gpt-4o-transcribe",
            "VOICEAGENT_GREETING": " Hello! ",
        }
    )
    s = settings.session
    assert (s.voice, s.vad, s.vad_threshold, s.vad_prefix_padding_ms, s.vad_silence_ms) == (
        "marin",
        "semantic_vad",
        0.6,
        200,
        700,
    )
    assert s.transcription_model == "gpt-4o-transcribe" and settings.greeting == "Hello!"


def test_the_insecure_opt_out_replaces_the_auth_token():
    env = {k: v for k, v in AZURE.items() if k != "TWILIO_AUTH_TOKEN"}
    settings = load_settings({**env, "VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION": "true"})
    assert settings.insecure_skip_validation and settings.twilio_auth_token is None


def test_ga_only_voices_are_refused_on_the_preview_protocol() -> None:
    env = {**AZURE, "AZURE_OPENAI_API_VERSION": "2025-04-01-preview", "VOICEAGENT_VOICE": "marin"}
    with pytest.raises(ConfigError, match="VOICEAGENT_VOICE=marin"):
        load_settings(env)
    assert load_settings({**AZURE, "VOICEAGENT_VOICE": "cedar"}).session.voice == "cedar"  # GA: fine


def test_semantic_vad_on_azure_is_warned_about() -> None:
    settings = load_settings({**AZURE, "VOICEAGENT_VAD": "semantic_vad"})
    assert [event for event, _ in configuration_warnings(settings)] == ["semantic_vad_on_azure"]
    assert configuration_warnings(load_settings(AZURE)) == []


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_numbers_must_be_finite(value: str) -> None:
    with pytest.raises(ConfigError, match="VOICEAGENT_MAX_CALL_SECONDS"):
        load_settings({**AZURE, "VOICEAGENT_MAX_CALL_SECONDS": value})
