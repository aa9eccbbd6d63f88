"""A stand-in for the restaurant's booking system: the HTTP service behind ``tools.json``.

``POST /update`` with ``Authorization: Bearer $BOOKING_API_TOKEN`` and ``{"booking_id": 12, "party_size": 4,
"time": "20:00"}`` (either of the last two) changes a booking in the same SQLite file the Python tools use.
Run: ``PYTHONPATH=examples/restaurant python examples/restaurant/booking_service.py`` (port 8099).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from restaurant_tools import change_booking
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN_ENV = "BOOKING_API_TOKEN"
PORT = 8099


def _authorised(request: Request) -> bool:
    token = os.environ.get(TOKEN_ENV, "")
    presented = request.headers.get("authorization", "")
    return bool(token) and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


async def update(request: Request) -> JSONResponse:
    if not _authorised(request):
        return JSONResponse({"error": "not authorised"}, status_code=401)
    try:
        body: Any = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    if not isinstance(body, dict) or not isinstance(body.get("booking_id"), int):
        return JSONResponse({"error": "booking_id (an integer) is required"}, status_code=422)
    if body.get("party_size") is None and body.get("time") is None:
        return JSONResponse({"error": "say what to change: party_size, time or both"}, status_code=422)
    try:
        # sqlite3 blocks: off the event loop, as voiceagent does with the sync tools
        changed = await asyncio.to_thread(
            change_booking, body["booking_id"], party_size=body.get("party_size"), time=body.get("time")
        )
    except ValueError as exc:
        return JSONResponse({"updated": False, "reason": str(exc)}, status_code=409)
    if changed is None:
        return JSONResponse({"error": f"there is no booking number {body['booking_id']}"}, status_code=404)
    return JSONResponse({"updated": True, "booking": changed})


app = Starlette(routes=[Route("/update", update, methods=["POST"])])

if __name__ == "__main__":
    import uvicorn

    if not os.environ.get(TOKEN_ENV):
        raise SystemExit(f"set {TOKEN_ENV}: the service only answers requests that present it")
    uvicorn.run(app, host="127.0.0.1", port=PORT)
