"""The FastAPI app: `/health`, `/v1/models`, `/v1/chat/completions` (JSON or SSE), and the web page at `/`.

A request's path: check its content type and key, parse it (schemas), check it against the limits before any
work (server.check_request) -> fetch its media in the event loop (fetch: deadline, bounded concurrency) -> encode
them and build its prompt in a worker thread (server) -> queue it on the batching scheduler -> stream or collect
its text, cancelled when the client goes away. Every client mistake is answered with an `APIError` body and the
server carries on. Around the routes: the Host header check (DNS rebinding), CORS only for `--allowed-origins`,
the body limit. Logs carry one line per request: id, media kinds, frames, prompt and completion tokens, time to
first token and total time; prompts only with `--log-prompts`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import LlamaVidError
from ..inference.settings import GenerationSettings
from .errors import APIError, error_body, error_response
from .limits import BodyLimit
from .logs import RequestLog
from .schemas import ChatRequest, chunk_body, completion_body, new_request_id, parse_chat_request, usage
from .server import Server
from .settings import ServeSettings

logger = logging.getLogger("llamavid.serve")


async def prepare(server: Server, chat: ChatRequest):
    """Check the request against the limits, fetch its media (in the event loop), then encode them and build its
    prompt (in a worker thread); also says how many media came from the feature cache."""
    server.check_request(chat)
    # downloads wait in the event loop; data: URLs and local files (None here) are read in the worker thread
    fetched = [[await server.fetcher.fetch(ref.url) if server.fetcher.is_download(ref.url) else None
                for ref in turn.media] for turn in chat.turns]

    def encode_and_build():
        hits = server.encode_request(chat, fetched)
        return server.sample(chat.turns, chat.system), hits

    return await run_in_threadpool(encode_and_build)


def create_app(engine, settings: ServeSettings | None = None) -> FastAPI:
    """The whole server for one engine; mount the web page unless `settings.web` is False."""
    settings = settings or ServeSettings()
    server = Server(engine, settings)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        server.close()

    app = FastAPI(title="llamavid", lifespan=lifespan, docs_url="/v1/docs", openapi_url="/v1/openapi.json")
    app.state.server = server

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, error: StarletteHTTPException):
        return JSONResponse(error_body(str(error.detail), error.status_code), status_code=error.status_code)

    @app.exception_handler(APIError)
    async def _api_error(_request, error: APIError):
        return error_response(error)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request):
        _check_key(request, settings)
        return {"object": "list", "data": [{
            "id": settings.model_name, "object": "model", "created": int(time.time()), "owned_by": "llamavid",
            "max_model_len": engine.context_length,
        }]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _chat(request, server)

    if settings.web:
        from .web import mount_web_demo

        app = mount_web_demo(app, server)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    if settings.answered_hosts is not None:  # outermost: a rebound name reaches nothing
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.answered_hosts, www_redirect=False)
    return app


def _check_key(request: Request, settings: ServeSettings) -> None:
    if settings.api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise APIError("Missing or wrong API key: send 'Authorization: Bearer <key>'", status=401)


async def _chat(request: Request, server: Server):
    record = RequestLog(new_request_id(), server.settings.log_prompts)
    try:
        _check_key(request, server.settings)
        _check_json(request)
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(f"The body is not valid JSON: {error}") from None
        except RecursionError:
            raise APIError("The body's JSON is nested too deeply") from None
        chat = parse_chat_request(data)
        if chat.model not in (None, server.settings.model_name):
            raise APIError(f"The model `{chat.model}` does not exist; this server serves "
                           f"`{server.settings.model_name}`", status=404, param="model")
        sample, hits = await prepare(server, chat)
        settings = GenerationSettings(temperature=chat.temperature, top_p=chat.top_p, seed=chat.seed)
    except (APIError, LlamaVidError) as error:  # the client's mistake: a 4xx with its message
        error = error if isinstance(error, APIError) else APIError(str(error))
        record.failed(error.status, error.message)
        return error_response(error)
    except ClientDisconnect:  # gone before its body was read: nothing to answer, and not the server's fault
        record.failed(499, "client disconnected")
        return _gone()
    except Exception as error:  # a bug, not the client's fault: say so in one line, keep serving
        logger.exception("%s failed while preparing", record.request_id)
        record.failed(500, f"{type(error).__name__}: {error}")
        return JSONResponse(error_body(f"internal error: {type(error).__name__}", 500), status_code=500)
    record.started([turn.text for turn in chat.turns], sample, hits)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = server.submit(sample, settings, lambda kind, value: loop.call_soon_threadsafe(events.put_nowait, (kind, value)),
                        chat.max_tokens, chat.stop, chat.ignore_eos)
    model = server.settings.model_name
    if chat.stream:
        return StreamingResponse(_sse(record, job, events, chat, model), media_type="text/event-stream")
    pieces = []
    watcher = asyncio.create_task(_cancel_when_gone(request, job, events))
    try:
        while True:
            kind, value = await events.get()
            if kind == "gone":
                record.finished(job, 499)
                return _gone()
            if kind == "text":
                pieces.append(value)
            elif kind == "error":
                record.failed(500, str(value))
                return JSONResponse(error_body(f"generation failed: {type(value).__name__}", 500), 500)
            else:
                break
    finally:
        watcher.cancel()
        job.cancel()  # a no-op once finished; stops the row if this coroutine is cancelled
    record.finished(job, 200)
    prompt_tokens = len(sample.ids)
    return completion_body(record.request_id, model, "".join(pieces), value, prompt_tokens, job.row.completion_tokens)


def _gone() -> JSONResponse:
    """The answer to a client that went away: nobody reads it, but the status is what the log and tests see."""
    return JSONResponse(error_body("client disconnected", 499), status_code=499)


def _check_json(request: Request) -> None:
    """JSON routes take `application/json` only: a browser sends other types cross-site without asking (CORS
    preflight), so this keeps other sites' pages from calling the API."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise APIError(f"The body must be sent as Content-Type: application/json, not {kind or 'none'!r}",
                       status=415)


async def _cancel_when_gone(request: Request, job, events: asyncio.Queue) -> None:
    """Cancel the job once the client has gone away, and say so on `events`: the body has been read, so the next
    ASGI message is the disconnect, whenever it comes (a job still queued is dropped by the scheduler without a
    word). Waiting on it, not polling with a cancelled receive, leaves the server to wake this when it sees it."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel()
    events.put_nowait(("gone", None))


async def _sse(record, job, events: asyncio.Queue, chat: ChatRequest, model: str):
    """Server-sent events: a role chunk, content chunks, a finish chunk, optional usage, `[DONE]`."""
    rid = record.request_id
    extra = {"usage": None} if chat.include_usage else {}

    def line(body: dict) -> str:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    status = 200
    try:
        yield line({**chunk_body(rid, model, {"role": "assistant", "content": ""}), **extra})
        while True:
            kind, value = await events.get()
            if kind == "text":
                yield line({**chunk_body(rid, model, {"content": value}), **extra})
            elif kind == "error":
                status = 500
                yield line(error_body(f"generation failed: {type(value).__name__}", 500))
                break
            else:
                yield line({**chunk_body(rid, model, {}, finish=value), **extra})
                if chat.include_usage:
                    yield line(chunk_body(rid, model, {}, usage_=usage(len(job.sample.ids), job.row.completion_tokens),
                                          with_choice=False))
                break
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        job.cancel()
        record.finished(job, status)
