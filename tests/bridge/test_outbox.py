"""The send queue never swallows a failure it should not: an encoding failure (a bug of ours) is an
error line naming the peer; a peer that went away is only noted, since its reader ends the call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from voiceagent.outbox import Outbox
from voiceagent.text import valid_text


async def test_a_message_that_cannot_be_encoded_is_logged_and_the_rest_still_goes(
    caplog_json: Callable[[], list[dict[str, Any]]],
) -> None:
    sent: list[str] = []

    async def send(message: object) -> None:
        sent.append(orjson.dumps(message).decode())  # what the model connection does

    outbox: Outbox[object] = Outbox(send, peer="model")
    outbox.put({"text": "before"})
    outbox.put({"text": "caf\ud800"})  # a lone surrogate: orjson refuses it
    outbox.put({"text": "after"})
    await outbox.flush()
    assert sent == ['{"text":"before"}', '{"text":"after"}']
    [failed] = [line for line in caplog_json() if line["event"] == "send_failed"]
    assert failed["level"] == "error" and failed["peer"] == "model" and "str is not valid UTF-8" in failed["error"]


async def test_operator_text_made_valid_is_sent() -> None:
    sent: list[str] = []

    async def send(message: object) -> None:
        sent.append(orjson.dumps(message).decode())

    outbox: Outbox[object] = Outbox(send, peer="model")
    outbox.put({"text": valid_text("caf\ud800")})
    await outbox.flush()
    assert sent == ['{"text":"caf\ufffd"}']
