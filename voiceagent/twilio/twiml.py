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


def stream_url(public_base: str) -> str:
    """``https://host/base`` → ``wss://host/base/twilio/media`` (``http`` → ``ws`` for local tests).

    Twilio refuses a stream URL with a query string (error 31920): data goes in ``<Parameter>``s."""
    parts = urlsplit(public_base)
    scheme = {"https": "wss", "http": "ws"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + MEDIA_PATH, "", ""))


def connect(public_base: str, parameters: dict[str, str]) -> str:
    """Connect the call to our media stream; when the stream ends, Twilio asks ``/twilio/stream-ended``
    what to do next (hang up, or apologise first if the model could not be reached)."""
    response = VoiceResponse()
    response.append(_connect(public_base, parameters))
    return str(response)


def _connect(public_base: str, parameters: dict[str, str]) -> Connect:
    bridge = Connect(action=public_base.rstrip("/") + STREAM_ENDED_PATH, method="POST")
    stream = bridge.stream(url=stream_url(public_base))
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return bridge


def say_and_reconnect(message: str, public_base: str, parameters: dict[str, str]) -> str:
    """Say ``message``, then connect the call to a new media stream (a transfer that came back)."""
    response = VoiceResponse()
    response.say(message)
    response.append(_connect(public_base, parameters))
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
