"""The FastAPI app: `/health`, `/v1/models`, `/v1/chat/completions` (JSON or SSE), and the web page at `/`.

A request's path: parse (schemas) -> fetch and encode its media in a worker thread (media; cached by content) ->
build its token ids (prompts) -> queue it on the batching scheduler -> stream or collect its text. Every client
mistake is answered with an `APIError` body and the server carries on. Logs carry one line per request: id,
media kinds, frames, prompt and completion tokens, time to first token and total time; prompts only with
`--log-prompts`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import shutil
import tempfile
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import APIError, error_body, error_response
from .limits import BodyLimit
from .media import MediaEncoder
from .prompts import Sample, build_sample
from .scheduler import BatchScheduler, Job
from .schemas import ChatRequest, chunk_body, completion_body, new_request_id, parse_chat_request, usage
from .settings import ServeSettings

logger = logging.getLogger("llamavid.serve")

DISCONNECT_POLL_S = 0.5


class Server:
    """What every route shares: the engine, the media encoder, the scheduler, the settings."""

    def __init__(self, engine, settings: ServeSettings):
        self.engine = engine
        self.settings = settings
        self.temp_dir = tempfile.mkdtemp(prefix="llamavid-serve-")
        self.media = MediaEncoder(engine, settings, self.temp_dir)
        self.scheduler = BatchScheduler(engine, settings.max_batch_size, settings.batch_wait_ms)

    def close(self) -> None:
        self.scheduler.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def prepare(self, chat: ChatRequest) -> tuple[Sample, int]:
        """Fetch and encode the request's media, then build its sample (runs in a worker thread); also says
        how many media came from the feature cache."""
        hits = 0
        for turn in chat.turns:
            encoded = [self.media.encode(ref) for ref in turn.media]
            turn.media = [features for features, _ in encoded]
            hits += sum(cached for _, cached in encoded)
        return build_sample(self.engine, chat.turns, chat.system), hits

    def job(self, sample: Sample, chat: ChatRequest, sink) -> Job:
        room = self.engine.context_length - len(sample.ids)
        return Job(
            sample=sample,
            max_tokens=min(chat.max_tokens or self.settings.default_max_tokens, room),
            sink=sink,
            temperature=chat.temperature,
            top_p=chat.top_p,
            seed=chat.seed,
            stop=sample.stop + chat.stop,
        )


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
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(f"The body is not valid JSON: {error}") from None
        chat = parse_chat_request(data)
        if chat.model not in (None, server.settings.model_name):
            raise APIError(f"The model `{chat.model}` does not exist; this server serves "
                           f"`{server.settings.model_name}`", status=404, param="model")
        sample, hits = await run_in_threadpool(server.prepare, chat)
    except APIError as error:
        record.failed(error.status, error.message)
        return error_response(error)
    except Exception as error:  # a bug, not the client's fault: say so in one line, keep serving
        logger.exception("%s failed while preparing", record.request_id)
        record.failed(500, f"{type(error).__name__}: {error}")
        return JSONResponse(error_body(f"internal error: {type(error).__name__}", 500), status_code=500)
    record.started([turn.text for turn in chat.turns], sample, hits)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = server.job(sample, chat, lambda kind, value: loop.call_soon_threadsafe(events.put_nowait, (kind, value)))
    server.scheduler.submit(job)
    model = server.settings.model_name
    if chat.stream:
        return StreamingResponse(_sse(record, job, events, chat, model), media_type="text/event-stream")
    pieces = []
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    job.cancel()
                    record.finished(job, 499)
                    return JSONResponse(error_body("client disconnected", 499), status_code=499)
                continue
            if kind == "text":
                pieces.append(value)
            elif kind == "error":
                record.failed(500, str(value))
                return JSONResponse(error_body(f"generation failed: {type(value).__name__}", 500), 500)
            else:
                break
    finally:
        job.cancel()  # a no-op once finished; stops the row if this coroutine is cancelled
    record.finished(job, 200)
    prompt_tokens = len(sample.ids)
    return completion_body(record.request_id, model, "".join(pieces), value, prompt_tokens, job.completion_tokens)


async def _sse(record, job: Job, events: asyncio.Queue, chat: ChatRequest, model: str):
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
                    yield line(chunk_body(rid, model, {}, usage_=usage(len(job.sample.ids), job.completion_tokens),
                                          with_choice=False))
                break
        yield "data: [DONE]\n\n"
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        job.cancel()
        record.finished(job, status)


class RequestLog:
    """The one log line of a request."""

    def __init__(self, request_id: str, log_prompts: bool):
        self.request_id = request_id
        self.log_prompts = log_prompts
        self.start = time.perf_counter()
        self.fields = ""

    def started(self, texts: list[str], sample: Sample, cache_hits: int) -> None:
        kinds = ",".join("video" if m.is_video else "image" for m in sample.media) or "none"
        frames = ",".join(str(m.num_frames) for m in sample.media) or "0"
        self.fields = f"media={kinds} frames={frames} cached={cache_hits} prompt_tokens={len(sample.ids)}"
        if self.log_prompts:
            self.fields += f" prompt={json.dumps(texts)}"

    def failed(self, status: int, message: str) -> None:
        logger.info("%s status=%d error=%s total=%.3fs", self.request_id, status, json.dumps(message),
                    time.perf_counter() - self.start)

    def finished(self, job: Job, status: int) -> None:
        ttft = f"{job.first_token_at - self.start:.3f}s" if job.first_token_at else "-"
        logger.info("%s status=%d %s completion_tokens=%d finish=%s batch=%d ttft=%s total=%.3fs", self.request_id,
                    status, self.fields, job.completion_tokens, job.finish_reason or "cancelled", job.batch_size, ttft,
                    time.perf_counter() - self.start)
