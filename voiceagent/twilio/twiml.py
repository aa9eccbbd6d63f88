"""The TwiML documents voiceagent serves, built with the twilio SDK's builders.

``twiml/*.xml`` at the top of the repository shows each document as an operator will see it; a test
keeps those examples identical to what these builders produce.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from twilio.twiml.voice_response import Connect, VoiceResponse

MEDIA_PATH = "/twilio/media"
STREAM_ENDED_PATH = "/twilio/stream-ended"
DIAL_ENDED_PATH = "/twilio/dial-ended"
STREAM_STATUS_PATH = "/twilio/stream-status"
INSTANCE_PREFIX = "/instances/{instance}"  # a stream URL naming its instance (several instances)


def stream_url(public_base: str) -> str:
    """``https://host/base`` → ``wss://host/base/twilio/media`` (``http`` → ``ws`` for local tests).

    Twilio refuses a stream URL with a query string (error 31920): data goes in ``<Parameter>``s."""
    parts = urlsplit(public_base)
    scheme = {"https": "wss", "http": "ws"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + MEDIA_PATH, "", ""))


def connect(
    public_base: str, parameters: dict[str, str], *, stream_base: str | None = None, status_callback: bool = False
) -> str:
    """Connect the call to our media stream; when the stream ends, Twilio asks ``/twilio/stream-ended``
    what to do next (hang up, or apologise first if the model could not be reached).

    ``stream_base``: where the stream goes, when not ``public_base`` (the instance that answered, so that
    a proxy routing on it brings the stream to the pre-warmed session); the action stays on
    ``public_base``, for any instance to answer. ``status_callback``: Twilio reports the stream's events
    to ``/twilio/stream-status`` (a ``stream-error`` there is the other door to resume a lost call)."""
    response = VoiceResponse()
    response.append(_connect(public_base, parameters, stream_base, status_callback))
    return str(response)


def _connect(
    public_base: str, parameters: dict[str, str], stream_base: str | None = None, status_callback: bool = False
) -> Connect:
    base = public_base.rstrip("/")
    bridge = Connect(action=base + STREAM_ENDED_PATH, method="POST")
    reports = {"status_callback": base + STREAM_STATUS_PATH, "status_callback_method": "POST"}
    stream = bridge.stream(url=stream_url(stream_base or public_base), **(reports if status_callback else {}))
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return bridge


def say_and_reconnect(
    message: str,
    public_base: str,
    parameters: dict[str, str],
    *,
    stream_base: str | None = None,
    status_callback: bool = False,
) -> str:
    """Say ``message``, then connect the call to a new media stream (a transfer that came back)."""
    response = VoiceResponse()
    response.say(message)
    response.append(_connect(public_base, parameters, stream_base, status_callback))
    return str(response)


def say_and_hang_up(message: str) -> str:
    """Say ``message`` (if any) and end the call: lines busy, apologies, goodbyes."""
    response = VoiceResponse()
    if message:
        response.say(message)
    response.hangup()
    return str(response)


def dial(destination: str, caller_id: str | None, public_base: str | None = None) -> str:
    """Hand the caller to a person: ``<Dial>`` a phone number, or a SIP URI (``sip:…``). With
    ``public_base``, Twilio asks ``/twilio/dial-ended`` once the dialled leg is over (``<Dial action>``):
    a transfer nobody answered comes back to the agent."""
    response = VoiceResponse()
    options: dict[str, str] = {"caller_id": caller_id} if caller_id else {}
    if public_base is not None:
        options |= {"action": public_base.rstrip("/") + DIAL_ENDED_PATH, "method": "POST"}
    bridge = response.dial(**options)
    if destination.lower().startswith("sip:"):
        bridge.sip(destination)
    else:
        bridge.number(destination)
    return str(response)
