"""Request-body limit, enforced while the body is read.

Checking `Content-Length` alone lets a chunked upload through; this ASGI wrapper counts the bytes of every body
message, answers 413 (in the API's error shape) as soon as the total passes the limit, and otherwise replays the
body to the app. It guards the API paths only: the Gradio page has its own upload limit (`max_file_size`).
"""

from __future__ import annotations

import json

from .errors import error_body
from .logs import RequestLog
from .schemas import new_request_id

DRAIN_FACTOR = 4  # after refusing, read (and drop) up to this many times the limit so the client sees the 413


class BodyLimit:
    def __init__(self, app, max_bytes: int, prefix: str = "/v1"):
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        messages, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before its request was whole
                RequestLog(new_request_id(), log_prompts=False).failed(499, "client disconnected while sending")
                return
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await self._drain(receive, message, total)
                return await self._refuse(send)
            messages.append(message)
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive, message, total: int) -> None:
        while message.get("more_body", False) and total < DRAIN_FACTOR * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            total += len(message.get("body", b""))

    async def _refuse(self, send) -> None:
        limit = self.max_bytes / (1 << 20)
        payload = json.dumps(error_body(
            f"The request body is larger than the server's limit of {limit:g} MB (--max-body-mb)", 413
        )).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": payload})
