"""The conversation of one fake Realtime session: its items, in order, and the rules of the
``conversation.item.*`` client events (docs/protocol.md, "## 2. The Realtime API").

Pure: a rule the client breaks raises ``ClientError`` with the real service's code and message; the
session turns it into an ``error`` event.
"""

from __future__ import annotations

from typing import Any

from voiceagent.testing.fake_realtime.errors import ClientError

Item = dict[str, Any]


class Conversation:
    """Items in conversation order; ``items`` is the live list (tests may read it)."""

    def __init__(self) -> None:
        self.items: list[Item] = []

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.get("id") == item_id), None)

    def require(self, item_id: str, param: str = "item_id") -> Item:
        """The item, or the real service's ``item_not_found`` error."""
        item = self.get(item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with item_id '{item_id}' not found.", param)
        return item

    def last_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    def add(self, item: Item, after: str | None = None) -> str | None:
        """Insert ``item`` after the item ``after`` (default: at the end); returns the previous item id."""
        index = len(self.items)
        if after is not None:
            index = next(i for i, old in enumerate(self.items) if old.get("id") == after) + 1
        self.items.insert(index, item)
        return self.items[index - 1]["id"] if index > 0 else None

    def create(self, item: Item, after: str | None) -> str | None:
        """``conversation.item.create``: add a client's item; returns the previous item id."""
        if self.get(item["id"]) is not None:
            raise ClientError("invalid_value", f"Item with id '{item['id']}' already exists.", "item.id")
        if after is not None and self.get(after) is None:
            raise ClientError("item_not_found", f"Previous item with id '{after}' not found.", "previous_item_id")
        return self.add(item, after)

    def replace(self, item: Item) -> None:
        """Put ``item`` in place of the item with the same id."""
        for index, old in enumerate(self.items):
            if old.get("id") == item["id"]:
                self.items[index] = item

    def delete(self, item_id: str) -> None:
        self.require(item_id)
        self.items[:] = [item for item in self.items if item.get("id") != item_id]
