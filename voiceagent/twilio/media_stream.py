"""The Twilio Media Streams adapter: Twilio's wire on one side, the call core's vocabulary on the other.

Pure (no I/O). It owns everything Twilio-shaped: the stream SID, mark names, which marks a ``clear``
made void, and the exactly-three outbound message shapes (docs/protocol.md §1, "Outbound messages and
marks"). Each ``PlayAudio`` goes out as one ``media`` plus one ``mark``; Twilio echoes the mark once the
audio before it has played, which becomes ``PlayedUpTo(item, end)`` for the core. After a ``clear``,
Twilio echoes every pending mark at once ("played *or* cleared"): those echoes are void and swallowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import count
from typing import Any, assert_never

from voiceagent.audio import b64_decoded_length
from voiceagent.call.actions import ClearPlayback, PlayAudio
from voiceagent.call.inputs import BadInput, CallerAudio, CallerHungUp, Digit, PlayedUpTo, TransportEvent
from voiceagent.twilio import messages as tw

__all__ = ["MediaStreamAdapter"]

MAX_PAYLOAD_CHARS = 8 * 1024  # Twilio sends 20 ms (216 characters); a few hundred ms is already odd
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_KEYPAD = re.compile(r"[0-9*#A-D]", re.ASCII)


class MediaStreamAdapter:
    """One Twilio Media Stream, from its ``start`` on."""

    def __init__(self, start: tw.Start) -> None:
        self.stream_sid = start.stream_sid
        self._pending: dict[str, tuple[str, int]] = {}  # mark name -> (item_id, end offset)
        self._void: set[str] = set()  # marks a clear made meaningless; their echoes are expected
        self._mark_numbers = count(1)

    def receive(self, message: Mapping[str, Any]) -> TransportEvent | None:
        """The core's input for an ASGI ``websocket.receive`` message, or None for one that means nothing."""
        try:
            event = tw.parse_received(message)
        except tw.BadMessage as exc:
            return BadInput(str(exc))
        match event:
            case tw.Connected():
                return None
            case tw.Start():
                return BadInput("a second start on one stream")
            case _ if event.stream_sid != self.stream_sid:
                return BadInput(f"a {type(event).__name__.lower()} message for another stream")
            case tw.Media(payload=payload):
                if len(payload) > MAX_PAYLOAD_CHARS or not _BASE64.fullmatch(payload) or len(payload) % 4:
                    return BadInput("a media payload that is not a Twilio audio frame (size or base64)")
                return CallerAudio(payload, b64_decoded_length(payload))
            case tw.MarkEcho(name=name):
                return self._echoed(name)
            case tw.Dtmf(digit=digit):
                if not _KEYPAD.fullmatch(digit):
                    return BadInput("a dtmf message that is not one keypad key")
                return Digit(digit)
            case tw.Stop():
                return CallerHungUp("caller hung up")
            case _:
                assert_never(event)

    def _echoed(self, name: str) -> TransportEvent | None:
        if name in self._void:
            self._void.discard(name)
            return None
        entry = self._pending.pop(name, None)
        if entry is None:
            return BadInput("an echo of a mark that was never set")
        return PlayedUpTo(*entry)

    def send(self, action: PlayAudio | ClearPlayback) -> list[str]:
        """The wire frames (JSON text) for a playback action, in order."""
        match action:
            case PlayAudio(item_id=item_id, payload=payload, end=end):
                name = f"m{next(self._mark_numbers)}"
                self._pending[name] = (item_id, end)
                return [tw.MediaMessage(payload).to_wire(self.stream_sid), tw.SetMark(name).to_wire(self.stream_sid)]
            case ClearPlayback():
                self._void.update(self._pending)
                self._pending.clear()
                return [tw.ClearAudio().to_wire(self.stream_sid)]
            case _:
                assert_never(action)
