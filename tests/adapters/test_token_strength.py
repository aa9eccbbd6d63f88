"""Tokens that guard the API and sign the webhook must be hard to guess, not only long."""

from __future__ import annotations

import pytest

from voiceagent.store.settings import RecordsSettings
from voiceagent.variables import ConfigError, guessable_bits


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaaaaaa", "abababababababababababab", "1111111122222222"])
def test_a_weak_api_token_is_refused_naming_the_variable(weak: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RecordsSettings.from_env({"VOICEAGENT_API_TOKEN": weak})
    message = str(refused.value)
    assert "VOICEAGENT_API_TOKEN is too easy to guess" in message and weak not in message


def test_a_random_token_passes() -> None:
    token = "9f2c4e1a7b3d5f60a8c2e4b6d8f01357"  # what `openssl rand -hex 16` gives
    assert guessable_bits(token) > 100
    assert RecordsSettings.from_env({"VOICEAGENT_API_TOKEN": token}).api_token == token
