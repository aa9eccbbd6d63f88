"""The floor for ``benchmarks/load.py``: the least a Twilio <-> Realtime relay can do, on the same stack.

    AZURE_OPENAI_ENDPOINT=http://127.0.0.1:PORT PUBLIC_BASE_URL=http://127.0.0.1:8080 python benchmarks/bare_relay.py

Starlette + uvicorn with exactly ``voiceagent.server.uvicorn_config``'s settings (event loop, HTTP and
WebSocket implementations, no compression), and the same model client settings as ``ModelConnection``
(websockets, no compression, 3 s pings). Per call it answers the webhook with ``<Connect><Stream>``, opens
the model when the stream starts, configures it with the same ``session.update`` voiceagent sends, asks
for the greeting, then only pipes: each Twilio ``media`` payload becomes an ``input_audio_buffer.append``,
each model audio delta becomes a ``media`` plus a ``mark``, and ``speech_started`` becomes a ``clear``.

No signatures, tokens, limits, call core, playback accounting, truncation, transcripts, records or logs:
everything voiceagent does beyond moving the bytes is what the comparison with this measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from types import SimpleNamespace

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voiceagent.realtime.connection import open_model_socket
from voiceagent.server import uvicorn_config

ENDPOINT = os.environ.get("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9000").replace("http", "ws", 1)
MODEL_URL = f"{ENDPOINT}/openai/v1/realtime?model={os.environ.get('AZURE_OPENAI_DEPLOYMENT', 'gpt-realtime')}"
HEADERS = {"api-key": os.environ.get("AZURE_OPENAI_API_KEY", "test-key")}
PUBLIC = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8080")
INSTRUCTIONS = "You are a friendly, concise phone assistant. Speak naturally, keep answers short."
SESSION_UPDATE = json.dumps(
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": INSTRUCTIONS,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {"type": "server_vad"},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
            },
        },
    }
)
GREETING = json.dumps({"type": "response.create", "response": {"instructions": INSTRUCTIONS + " Greet the caller."}})
TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{PUBLIC.replace("http", "ws", 1)}/twilio/media"/></Connect></Response>'
)


async def voice(request: Request) -> Response:
    await request.body()
    return Response(TWIML, media_type="text/xml")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def media(websocket: WebSocket) -> None:
    await websocket.accept()
    stream_sid = None
    while stream_sid is None:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        event = json.loads(message["text"])
        if event.get("event") == "start":
            stream_sid = event["streamSid"]
    model = await open_model_socket(MODEL_URL, HEADERS)
    await model.send(SESSION_UPDATE)
    await model.send(GREETING)

    async def model_to_twilio() -> None:
        marks = 0
        async for raw in model:
            event = json.loads(raw)
            kind = event["type"]
            if kind == "response.output_audio.delta":
                marks += 1
                await websocket.send_text(
                    json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": event["delta"]}})
                )
                await websocket.send_text(
                    json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": f"m{marks}"}})
                )
            elif kind == "input_audio_buffer.speech_started":
                await websocket.send_text(json.dumps({"event": "clear", "streamSid": stream_sid}))

    replies = asyncio.create_task(model_to_twilio())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            event = json.loads(message["text"])
            kind = event.get("event")
            if kind == "media":
                await model.send(json.dumps({"type": "input_audio_buffer.append", "audio": event["media"]["payload"]}))
            elif kind == "stop":
                break
    finally:
        replies.cancel()
        with contextlib.suppress(BaseException):
            await replies
        await model.close()
        with contextlib.suppress(Exception):
            await websocket.close()


app = Starlette(
    routes=[
        Route("/twilio/voice", voice, methods=["POST"]),
        Route("/healthz", healthz),
        WebSocketRoute("/twilio/media", media),
    ]
)

if __name__ == "__main__":
    server_settings = SimpleNamespace(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        max_calls=int(os.environ.get("VOICEAGENT_MAX_CALLS", "1000")),
    )
    uvicorn.Server(uvicorn_config(app, server_settings)).run()  # type: ignore[arg-type]
