"""A faithful fake of the Azure OpenAI / OpenAI Realtime API (see ``server`` for how to use it).

``server``: the WebSocket server and its handshake (``handshake``); ``session``: one model session;
``conversation``, ``response``, ``audio``, ``dialect``, ``errors``: the pieces a session is made of.
"""

from __future__ import annotations

from voiceagent.testing.fake_realtime.handshake import Rejection, Target, check_auth, parse_target
from voiceagent.testing.fake_realtime.options import SessionOptions
from voiceagent.testing.fake_realtime.server import FakeRealtimeServer
from voiceagent.testing.fake_realtime.session import FakeModelSession

__all__ = [
    "FakeModelSession",
    "FakeRealtimeServer",
    "Rejection",
    "SessionOptions",
    "Target",
    "check_auth",
    "parse_target",
]
