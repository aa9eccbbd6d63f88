"""How a bus message longer than one NOTIFY travels: compressed, in ordered pieces, bounded when unpacked."""

from __future__ import annotations

import json
import os

from voiceagent.line.postgres import MAX_MESSAGE_BYTES, MAX_PAYLOAD, _assembled, _packed


def _through(payloads: list[str]) -> list[str]:
    pieces: dict[str, list[str]] = {}
    return [whole for payload in payloads if (whole := _assembled(payload, pieces)) is not None]


def test_a_long_message_comes_back_whole_and_every_piece_fits_one_notify() -> None:
    message = json.dumps({"to": "b", "from": "a", "kind": "reply", "body": {"noise": os.urandom(20_000).hex()}})
    payloads = _packed(message)
    assert len(payloads) > 1
    assert all(len(payload.encode()) <= MAX_PAYLOAD for payload in payloads)
    assert _through(payloads) == [message]


def test_a_compressible_reply_goes_in_one_notify() -> None:
    live = json.dumps({"calls": [{"call_sid": f"CA{n:032x}", "status": "in_progress", "lines": n} for n in range(200)]})
    assert len(live) > MAX_PAYLOAD
    assert len(_packed(live)) == 1


def test_a_missing_piece_loses_that_message_only() -> None:
    first, second = os.urandom(20_000).hex(), os.urandom(20_000).hex()
    cut = _packed(first)
    assert len(cut) > 2
    assert _through([cut[0], *cut[2:], *_packed(second)]) == [second]


def test_a_message_that_would_unpack_past_the_cap_is_dropped() -> None:
    bomb = _packed("0" * (MAX_MESSAGE_BYTES + 1))
    assert _through(bomb) == []
    assert _through(_packed("0" * (MAX_MESSAGE_BYTES - 1))) == ["0" * (MAX_MESSAGE_BYTES - 1)]
