"""The test kit's front door: everything in ``voiceagent.testing.__all__`` is there, once, and importable
by name (as in websockets' own tests/test_exports.py)."""

from __future__ import annotations

import importlib

import pytest

import voiceagent.testing
import voiceagent.testing.fake_realtime

FRONT_DOOR = voiceagent.testing.__all__


def test_the_front_door_lists_each_name_once() -> None:
    duplicates = sorted({name for name in FRONT_DOOR if FRONT_DOOR.count(name) > 1})
    assert duplicates == []


@pytest.mark.parametrize("name", FRONT_DOOR)
def test_every_name_in_the_front_door_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from voiceagent.testing import {name}", namespace)  # what a user's test does
    assert namespace[name] is getattr(voiceagent.testing, name)
    assert not name.startswith("_")


def test_star_import_gives_exactly_the_front_door() -> None:
    namespace: dict[str, object] = {}
    exec("from voiceagent.testing import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(FRONT_DOOR)


@pytest.mark.parametrize("name", voiceagent.testing.fake_realtime.__all__)
def test_the_fake_realtime_subpackage_exports_what_it_lists(name: str) -> None:
    assert hasattr(importlib.import_module("voiceagent.testing.fake_realtime"), name)


def test_what_users_need_is_at_the_front_door() -> None:
    needed = {
        "FakeRealtimeServer",
        "FakeModelSession",
        "FakeTwilioCaller",
        "serve_app",
        "app_environment",
        "RunningApp",
        "TEST_AUTH_TOKEN",
        "TEST_API_KEY",
        "load_fixture",
        "FIXTURE_TEXTS",
        "wait_until",
        "validate_client_event",
        "validate_server_event",
    }
    assert needed <= set(FRONT_DOOR)
