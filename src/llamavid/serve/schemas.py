"""Chat-completion requests in, chat-completion bodies and chunks out (OpenAI's shapes, vLLM's extensions).

Parsing is ours rather than FastAPI's so that every mistake becomes one `APIError` with a readable message
(`messages[1].content[0].type: unknown content part type 'audio_url'`) instead of a 422 `detail` list.
Unknown top-level fields are ignored, as vLLM does, so clients that send extra options keep working.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..inference.inputs import Turn
from .errors import APIError

MEDIA_PART_TYPES = {"image_url": "image", "video_url": "video"}


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequestBody(BaseModel):
    """The fields we honour; see docs/serving.md."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=-(1 << 63), le=(1 << 63) - 1)  # torch's seed range, as vLLM checks
    stop: str | list[str] | None = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    media_io_kwargs: dict[str, dict[str, Any]] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 non-empty stop strings")
        return stops


@dataclass
class MediaRef:
    """One image or video named by a request, before it is fetched."""

    kind: Literal["image", "video"]
    url: str
    fps: float | None = None
    num_frames: int | None = None
    max_frames: int | None = None


@dataclass
class ChatRequest:
    """A validated request: turns, sampling, and per-request video sampling."""

    turns: list[Turn]
    system: str | None
    model: str | None
    temperature: float
    top_p: float
    max_tokens: int | None
    seed: int | None
    stop: list[str]
    stream: bool
    include_usage: bool
    ignore_eos: bool = False

    @property
    def media_refs(self) -> list[MediaRef]:
        return [ref for turn in self.turns for ref in turn.media]


def parse_chat_request(data: Any) -> ChatRequest:
    """JSON value -> ChatRequest, or an APIError naming the first problem."""
    if not isinstance(data, dict):
        raise APIError("The request body must be a JSON object (a chat completion request)")
    try:
        body = ChatRequestBody.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise APIError(f"{where}: {first['msg']}", param=where) from None
    video_defaults = (body.media_io_kwargs or {}).get("video", {})
    system_parts, turns = [], []
    for index, message in enumerate(body.messages):
        text, media = _parse_content(message.content, index, video_defaults)
        if message.role in ("system", "developer"):
            if media:
                raise APIError(f"messages[{index}]: a {message.role} message cannot carry media")
            system_parts.append(text)
        else:
            if message.role == "assistant" and media:
                raise APIError(f"messages[{index}]: an assistant message cannot carry media")
            turns.append(Turn(message.role, text, media))
    if not turns or turns[-1].role != "user":
        raise APIError("messages: the conversation must end with a user message", param="messages")
    return ChatRequest(
        turns=turns,
        system="\n".join(system_parts) if system_parts else None,
        model=body.model,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        seed=body.seed,
        stop=body.stop or [],
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        ignore_eos=body.ignore_eos,
    )


def _parse_content(content, index: int, video_defaults: dict) -> tuple[str, list[MediaRef]]:
    if content is None or isinstance(content, str):
        return (content or "").strip(), []
    texts, media = [], []
    for number, part in enumerate(content):
        where = f"messages[{index}].content[{number}]"
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise APIError(f"{where}.text: a text part needs a string 'text'", param=where)
            texts.append(part["text"])
        elif kind in MEDIA_PART_TYPES:
            media.append(_media_ref(part, kind, where, video_defaults))
        else:
            raise APIError(
                f"{where}.type: unknown content part type {kind!r}; use 'text', 'image_url' or 'video_url'",
                param=f"{where}.type",
            )
    return "\n".join(t.strip() for t in texts if t.strip()), media


def _media_ref(part: dict, kind: str, where: str, video_defaults: dict) -> MediaRef:
    value = part.get(kind)
    if isinstance(value, str):  # some clients send the URL bare
        value = {"url": value}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not value["url"]:
        raise APIError(f"{where}.{kind}: expected {{'url': ...}}", param=f"{where}.{kind}")
    ref = MediaRef(MEDIA_PART_TYPES[kind], value["url"])
    if ref.kind == "video":
        ref.fps = _number(value.get("fps", video_defaults.get("fps")), f"{where}.fps", float)
        ref.num_frames = _number(video_defaults.get("num_frames"), "media_io_kwargs.video.num_frames", int)
        ref.max_frames = _number(value.get("max_frames"), f"{where}.max_frames", int)
    return ref


def _number(value, where: str, kind):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise APIError(f"{where}: expected a positive number, got {value!r}", param=where)
    if kind is int and value != int(value):
        raise APIError(f"{where}: expected a whole number, got {value!r}", param=where)
    return kind(value)


# -- responses ---------------------------------------------------------------------------------------------------


def new_request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(request_id: str, model: str, text: str, finish: str, prompt: int, completion: int) -> dict:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage(prompt, completion),
    }


def chunk_body(request_id: str, model: str, delta: dict, finish: str | None = None, usage_: dict | None = None,
               with_choice: bool = True) -> dict:
    body = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if with_choice else [],
    }
    if usage_ is not None:
        body["usage"] = usage_
    return body
