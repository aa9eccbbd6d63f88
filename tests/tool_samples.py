"""Tools for tests/wire/test_tools.py, written the way an operator would write them (imported by name, as
``VOICEAGENT_TOOLS=tool_samples`` would)."""

from __future__ import annotations

import asyncio
import datetime
import enum
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, on Python 3.11

from voiceagent.tools import tool

# A sync tool blocks on this until the test opens it: only possible if the event loop keeps running.
GATE = threading.Event()
GATE_WAIT_SECONDS = 5.0
# A sync tool that outlives its timeout blocks on this; the test releases it.
RELEASE = threading.Event()


class Seating(enum.Enum):
    inside = "inside"
    terrace = "terrace"


class Guest(BaseModel):
    name: str
    phone: str | None = None
    title: str = ""  # a property named "title" must survive the stripping of pydantic's titles


class Address(TypedDict):
    street: str
    number: int


class Category(BaseModel):
    name: str
    children: list[Category] = []  # recursive: cannot be inlined


@dataclass
class Booking:
    booking_id: int
    day: datetime.date
    seating: Seating


@tool
async def check_availability(party_size: int, time: str) -> dict[str, Any]:
    """Check which tables are free tonight for a party of this size around this time."""
    return {"tables": 2, "party_size": party_size, "time": time}


@tool
def book_table(
    guest: Guest,
    party_size: Annotated[int, "How many people, children included."],
    time: Annotated[str, Field(description="Tonight, 24-hour HH:MM.")],
    seating: Seating = Seating.inside,
    occasion: Literal["birthday", "business", "none"] = "none",
    notes: str | None = None,
) -> Booking:
    """Book a table tonight.

    The booking is final: confirm the details with the caller first.

    Args:
        guest: Who the table is for.
        party_size: Overridden by the Annotated text.
        occasion: Anything to
            celebrate.

    Returns:
        The booking.
    """
    assert isinstance(guest, Guest)  # a nested model arrives as its instance, not as a dict
    assert isinstance(seating, Seating)
    return Booking(booking_id=7, day=datetime.date(2025, 1, 31), seating=seating)


@tool
def deliver(address: Address, express: bool = False) -> str:
    """Send the menu to an address.

    Arguments:
        address (Address): Where to send it.
        express (bool): Whether to send it today.
    """
    return f"sent to {address['street']} {address['number']}" + (" today" if express else "")


@tool
def wait_for_gate() -> dict[str, Any]:
    """Wait (in a worker thread) until the test opens the gate."""
    opened = GATE.wait(timeout=GATE_WAIT_SECONDS)
    return {"opened": opened, "thread": threading.get_ident()}


@tool
def hang_until_released() -> str:
    """Block a worker thread until the test lets go."""
    RELEASE.wait(timeout=GATE_WAIT_SECONDS)
    return "released"


@tool
async def sleep_for(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "awake"


@tool
def fail(party_size: int) -> str:
    """Always raise."""
    raise ValueError(f"no table for {party_size} people " + "x" * 2000)


@tool
def shout(text: str, times: int = 1) -> str:
    """Repeat the text."""
    return text * times


@tool
def no_answer() -> None:
    """Answer nothing."""


@tool
def listing() -> list[int]:
    """Answer a list."""
    return [1, 2, 3]


@tool
def odd_value() -> dict[str, Any]:
    """Answer values JSON has no word for."""
    return {
        "nan": float("nan"),
        "when": datetime.datetime(2025, 1, 31, 19, 30),
        "thing": object.__new__(Unserialisable),
    }


class Unserialisable:
    def __str__(self) -> str:
        return "<unserialisable>"


@tool
def only_positional(party_size: int, /, time: str) -> str:
    """A positional-only parameter."""
    return f"{party_size}@{time}"


@tool
def count_categories(root: Category) -> int:
    """Count the categories in a tree."""
    return 1 + sum(count_categories(child) for child in root.children)


def not_a_tool(x: int) -> int:
    """Not marked: never offered to the model."""
    return x
