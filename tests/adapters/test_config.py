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
    settings = load_settings({**AZURE, "AZURE_OPENAI_API_VERSION": "2025-04-01-preview"})
    assert settings.model.dialect == "preview" and settings.model.api_version == "2025-04-01-preview"


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
        ({**AZURE, "VOICEAGENT_CALLER_AUDIO_BATCH_MS": "10"}, "VOICEAGENT_CALLER_AUDIO_BATCH_MS"),
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


# ---------------------------------------------------------------- holes closed (issue 12)


@pytest.mark.parametrize("version", ["2024-12-17-preview", "2025-04-01-preview"])
def test_known_preview_versions_are_accepted(version: str) -> None:
    assert load_settings({**AZURE, "AZURE_OPENAI_API_VERSION": version}).model.api_version == version


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("2024-10-01-preview", "is retired"),  # Azure retired it: every connect would fail
        ("2025-01-01-preview", "is not a Realtime preview version"),  # a real Azure version, not a Realtime one
        ("2025-04-01", "is not YYYY-MM-DD-preview"),
        ("latest", "is not YYYY-MM-DD-preview"),
    ],
)
def test_unknown_and_retired_api_versions_are_refused_naming_the_variable(version: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({**AZURE, "AZURE_OPENAI_API_VERSION": version})
    message = str(refused.value)
    assert message.startswith("AZURE_OPENAI_API_VERSION=") and version in message
    assert says in message and "unset AZURE_OPENAI_API_VERSION" in message


def test_the_test_kits_preview_environment_stays_valid() -> None:
    from voiceagent.testing import app_environment

    settings = load_settings(
        {**app_environment("http://127.0.0.1:9", dialect="preview"), "PUBLIC_BASE_URL": "http://127.0.0.1:8"}
    )
    assert settings.model.dialect == "preview"


@pytest.mark.parametrize("url", ["http://voice.example.com", "http://203.0.113.7:8080", "http://0.0.0.0:8080"])
def test_a_plain_http_public_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL=.*plain http.*HTTPS.*WSS"):
        load_settings({**AZURE, "PUBLIC_BASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://voice.example.com",
        "https://voice.example.com:8443/agent",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080",
        "http://localhost:8080",
        "http://voice.test",  # RFC 6761 names never resolve on the internet: Twilio could not be pointed there
    ],
)
def test_https_or_a_loopback_public_base_url_is_accepted(url: str) -> None:
    assert load_settings({**AZURE, "PUBLIC_BASE_URL": url}).public_base_url == url


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "voice-1.internal", "a" * 63])
def test_host_takes_addresses_and_host_names(host: str) -> None:
    assert load_settings({**AZURE, "HOST": host}).host == host


@pytest.mark.parametrize("host", ["0.0.0.0:8080", "http://0.0.0.0", "my host", "-bad.example.com", "a" * 64, "256.1.1"])
def test_a_bad_host_is_refused_naming_it(host: str) -> None:
    with pytest.raises(ConfigError, match=r"^HOST=.* is neither an IP address nor a host name"):
        load_settings({**AZURE, "HOST": host})


def test_every_problem_is_reported_at_once() -> None:
    env = {k: v for k, v in AZURE.items() if k != "TWILIO_AUTH_TOKEN"}
    env |= {
        "PORT": "eighty",
        "HOST": "not a host",
        "VOICEAGENT_VOICE": "robot",
        "VOICEAGENT_VAD_THRESHOLD": "2",
        "AZURE_OPENAI_API_VERSION": "2024-10-01-preview",
        "PUBLIC_BASE_URL": "http://voice.example.com",
        "VOICEAGENT_MAX_CALLS": "0",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    named = [problem.split("=")[0].split(" ")[0] for problem in refused.value.problems]
    assert sorted(named) == sorted(
        [
            "AZURE_OPENAI_API_VERSION",
            "VOICEAGENT_VOICE",
            "VOICEAGENT_VAD_THRESHOLD",
            "TWILIO_AUTH_TOKEN",
            "HOST",
            "PORT",
            "PUBLIC_BASE_URL",
            "VOICEAGENT_MAX_CALLS",
        ]
    )
    message = str(refused.value)
    assert message.startswith("8 problems in the configuration:")
    assert all(f"  - {problem}" in message for problem in refused.value.problems)


def test_one_problem_is_reported_as_itself() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({**AZURE, "PORT": "eighty"})
    assert str(refused.value) == "PORT='eighty' is not a valid int"
    assert refused.value.problems == [str(refused.value)]


def test_azure_without_a_deployment_also_reports_a_bad_endpoint() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"AZURE_OPENAI_ENDPOINT": "res.openai.azure.com", "TWILIO_AUTH_TOKEN": "t" * 32})
    assert [problem.split("=")[0].split(" ")[0] for problem in refused.value.problems] == [
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "sip:desk@pbx.example.com;transport=tls",
        "desk=sip:desk@pbx.example.com;transport=tls;region=ie1,sales=+15551230001",
    ],
)
def test_a_sip_destination_may_carry_uri_parameters(raw: str) -> None:
    from voiceagent.config import _transfer_targets

    targets = _transfer_targets(raw)
    assert any(value.startswith("sip:desk@pbx.example.com;transport=tls") for value in targets.values())


@pytest.mark.parametrize("raw", ["sip:desk@pbx\x01.example.com", "sip:desk@pbx .example.com", "sip:dé@pbx.example.com"])
def test_a_sip_destination_is_printable_ascii_only(raw: str) -> None:
    from voiceagent.config import _transfer_targets

    with pytest.raises(ValueError):
        _transfer_targets(raw)
