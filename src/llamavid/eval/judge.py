"""An LLM judge through any OpenAI-compatible chat-completions endpoint, with the standard library only.

The original scripts call gpt-3.5-turbo through the legacy `openai` client, retry every error forever and give
the judge its default temperature. Here: temperature 0; each reply is parsed as the original does
(`ast.literal_eval` to a dict) and checked (an int()-able `score`, a string `pred` where one is asked for);
malformed replies, HTTP 429 and 5xx and connection errors are retried a bounded number of times with exponential
backoff (honouring a numeric Retry-After), after which the item is a *judge failure*, counted, never looped on.
Other 4xx answers (bad key, unknown model) stop the run with one line. Every accepted reply is cached on disk
under a digest of (judge model, messages, temperature), so a rerun costs nothing and an interrupted one resumes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_files import write_text_atomically
from ..errors import LlamaVidError


class JudgeError(LlamaVidError, RuntimeError):
    """The judge endpoint refused the requests (wrong URL, key or model): nothing can be scored."""


class MalformedReply(ValueError):
    pass


def parse_reply(content: str, need_pred: bool) -> dict:
    """The reply as the original reads it: a Python dict literal with `score` (and `pred`)."""
    try:
        value = ast.literal_eval(content.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise MalformedReply(f"not a Python literal: {content[:80]!r}") from None
    if not isinstance(value, dict) or "score" not in value:
        raise MalformedReply(f"no 'score' in {content[:80]!r}")
    try:
        int(value["score"])  # the original aggregates int(score)
    except (TypeError, ValueError):
        raise MalformedReply(f"score {value['score']!r} is not a number") from None
    if need_pred and not isinstance(value.get("pred"), str):
        raise MalformedReply(f"no string 'pred' in {content[:80]!r}")
    return value


@dataclass
class JudgeSettings:
    """The judge endpoint and how it is asked; the fields with a flag are `llamavid eval score`'s `--judge-*`."""

    base_url: str = field(metadata={"help": "OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1",
                                    "flag": "--judge-base-url"})
    model: str = field(metadata={"help": "judge model name (gpt-3.5-turbo in the paper)", "flag": "--judge-model"})
    api_key: str | None = field(default=None, metadata={"flag": False})  # from OPENAI_API_KEY, never a flag
    cache_dir: Path | None = field(
        default=None, metadata={"help": "reply cache folder (default: ANSWERS.judge-cache)", "flag": "--judge-cache"}
    )
    max_retries: int = field(default=4, metadata={"help": "retries of a failed or malformed reply",
                                                  "flag": "--judge-retries"})
    backoff_s: float = field(default=1.0, metadata={"help": "first retry delay in seconds", "flag": "--judge-backoff"})
    max_backoff_s: float = field(default=30.0, metadata={"flag": False})
    concurrency: int = field(default=8, metadata={"help": "judge requests in flight", "flag": "--judge-concurrency"})
    timeout_s: float = field(default=120.0, metadata={"flag": False})
    temperature: float = field(default=0.0, metadata={"flag": False})


class Judge:
    def __init__(self, settings: JudgeSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.sleep = sleep
        self.failures = 0
        self.requests_sent = 0
        self.cache_hits = 0
        self._lock = threading.Lock()
        if settings.cache_dir is not None:
            Path(settings.cache_dir).mkdir(parents=True, exist_ok=True)

    # -- cache -----------------------------------------------------------------------------------------------

    def _key(self, messages: list[dict]) -> str:
        payload = json.dumps(
            {"model": self.settings.model, "messages": messages, "temperature": self.settings.temperature},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _cached(self, key: str) -> str | None:
        if self.settings.cache_dir is None:
            return None
        path = Path(self.settings.cache_dir) / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError):
            return None

    def _store(self, key: str, reply: str) -> None:
        if self.settings.cache_dir is None:
            return
        path = Path(self.settings.cache_dir) / f"{key}.json"
        write_text_atomically(path, json.dumps({"model": self.settings.model, "reply": reply}))

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _post(self, messages: list[dict]) -> str:
        """One request; returns the reply text. Raises _Retryable or JudgeError."""
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        body = json.dumps(
            {"model": self.settings.model, "messages": messages, "temperature": self.settings.temperature}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with self._lock:
            self.requests_sent += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            if error.code == 429 or error.code >= 500:
                raise _Retryable(f"HTTP {error.code}", _retry_after(error)) from None
            raise JudgeError(f"judge at {url} answered HTTP {error.code} ({error.reason})") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise _Retryable(f"cannot reach {url}: {getattr(error, 'reason', error)}", None) from None
        except (ValueError, UnicodeDecodeError):
            raise _Retryable("the response is not JSON", None) from None
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Retryable("the response has no choices[0].message.content", None) from None

    def ask(self, messages: list[dict], need_pred: bool) -> dict | None:
        """The parsed reply, or None (a judge failure) after the retries are spent."""
        key = self._key(messages)
        cached = self._cached(key)
        if cached is not None:
            try:
                parsed = parse_reply(cached, need_pred)
            except MalformedReply:
                pass
            else:
                with self._lock:
                    self.cache_hits += 1
                return parsed
        for attempt in range(self.settings.max_retries + 1):
            try:
                reply = self._post(messages)
                parsed = parse_reply(reply, need_pred)
            except _Retryable as error:
                wait = error.retry_after
            except MalformedReply:
                wait = None
            else:
                self._store(key, reply)
                return parsed
            if attempt < self.settings.max_retries:
                backoff = min(self.settings.max_backoff_s, self.settings.backoff_s * 2**attempt)
                self.sleep(min(self.settings.max_backoff_s, wait) if wait is not None else backoff * (0.5 + random.random() / 2))
        with self._lock:
            self.failures += 1
        return None

    def ask_all(self, conversations: list[list[dict]], need_pred: bool, progress: bool = False) -> list[dict | None]:
        """Judge many items with at most `concurrency` requests in flight; results in input order."""
        if not conversations:
            return []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(conversations), desc="judge", unit="item")

        def one(messages):
            result = self.ask(messages, need_pred)
            if bar is not None:
                bar.update(1)
            return result

        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            results = list(pool.map(one, conversations))
        if bar is not None:
            bar.close()
        return results


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
