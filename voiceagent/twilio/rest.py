"""Twilio's REST API, for the one thing the service itself asks of it: replacing a live call's TwiML.

``calls(sid).update(twiml=…)`` (Twilio's "Modify calls in progress" guide: the call leaves what it was
doing and runs the new TwiML at once) is how a call whose stream was lost is connected to a new one
when Twilio does not request the ``<Connect action>`` (``voiceagent.line.lost``). It needs
``TWILIO_ACCOUNT_SID`` besides ``TWILIO_AUTH_TOKEN``; ``VOICEAGENT_TWILIO_API_URL`` moves it (a fake in
tests). The SDK is synchronous: callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CallUpdater", "call_updater"]

CallUpdater = Callable[[str, str], None]  # (call_sid, twiml)


def call_updater(account_sid: str, auth_token: str, api_url: str) -> CallUpdater:
    def update(call_sid: str, twiml: str) -> None:
        from twilio.rest import Client

        client = Client(account_sid, auth_token)
        client.api.base_url = api_url.rstrip("/")
        client.calls(call_sid).update(twiml=twiml)

    return update
