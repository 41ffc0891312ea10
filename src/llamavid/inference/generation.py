"""The one owner of `model.generate`, and the generation rules every caller shares.

Everything in llamavid that generates text (chat and the demo, the server and its web page, the evaluator,
training's held-out evaluation) goes through `Generator.run`:

* `GenerationSettings` become `generate` arguments in one place (`generate_arguments`): greedy at temperature 0,
  otherwise sampling with top-p and, unless asked, no top-k cut; the pad id is the processor's.
* Each row of a batch is a `Row`: its own answer budget, stop strings and destination. A `StoppingCriteria`
  (`RowsStopping`), which transformers calls after every decoding step, turns each row's new tokens into text
  (`TextStream`: text that could still be the start of a stop string is held back), sends it on, and marks the
  row finished at EOS, at a stop string, at its budget, or when it was cancelled (a client that went away).
  Finished rows are padded until the whole batch is done.
* One lock per model (`generator_for`): two generations never run at once on one model, whichever thread asks,
  so what a generation sets on the model for its duration (the random seed, a visual-only LoRA's choice of
  adapter per row) belongs to exactly one generation.
* Memory: the KV cache is kept in `kv_cache_dtype` (`auto`, `int8`, `int4`: `llamavid.inference.kv_cache`), and a
  prompt longer than `prefill_chunk_size` positions is prefilled in chunks of that size (`model.prefill`), so its
  activations stay bounded however long the movie.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..model.transformers_compat import CACHE_KEY
from .kv_cache import kv_cache_bits, new_cache
from .settings import GenerationSettings

PREFILL_CHUNK_SIZE = 2048


def generate_arguments(settings: GenerationSettings, pad_token_id: int, max_new_tokens: int) -> dict:
    """The `generate` keyword arguments for `settings` (besides the inputs and the stopping criteria)."""
    arguments = {"max_new_tokens": max_new_tokens, "do_sample": settings.temperature > 0, "pad_token_id": pad_token_id}
    if settings.temperature > 0:
        top_k = dict(top_k=0 if settings.top_k is None else settings.top_k)  # 0: transformers' "no top-k cut"
        arguments.update(temperature=settings.temperature, top_p=settings.top_p, **top_k)
    return arguments


def held_back_length(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of `text` that could be the start of a stop string (the longest suffix of `text`
    that is a proper prefix of one of `stops`): streamed text keeps them until the next token decides."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class TextStream:
    """One row's answer text as its tokens arrive: decoded incrementally, cut at the first stop string."""

    def __init__(self, tokenizer, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [stop for stop in stops if stop]
        self.tokens: list[int] = []
        self.sent = 0  # characters of the text already given out

    def push(self, token: int) -> tuple[str, bool]:
        """Add a token: (the text that became safe to show, whether a stop string has appeared)."""
        self.tokens.append(token)
        text = self._decode()
        cut = self._stop_at(text)
        if cut >= 0:
            return self._take(text[:cut]), True
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest of it
            return "", False
        return self._take(text[: len(text) - held_back_length(text, self.stops)]), False

    def close(self) -> str:
        """What is left to show when the row ends for another reason (EOS, its budget)."""
        text = self._decode()
        cut = self._stop_at(text)
        return self._take(text if cut < 0 else text[:cut])

    def _decode(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def _stop_at(self, text: str) -> int:
        found = (text.find(stop, max(0, self.sent - len(stop))) for stop in self.stops)
        return min((index for index in found if index >= 0), default=-1)

    def _take(self, text: str) -> str:
        piece = text[self.sent :]
        self.sent = max(self.sent, len(text))
        return piece


@dataclass
class Row:
    """One answer to generate. `sink(kind, value)` (called from the generating thread) receives ("text", piece)
    as the answer grows and ("done", finish_reason) once: "stop", "length" or "cancelled". `ignore_eos` runs
    the row past end-of-sequence tokens to its budget or a stop string (vLLM's option, for load tests)."""

    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    sink: Callable[[str, object], None] | None = None
    ignore_eos: bool = False
    cancelled: bool = False
    text: str = ""
    completion_tokens: int = 0
    first_token_at: float | None = None
    finish_reason: str | None = None

    def cancel(self) -> None:
        """Safe from any thread: the row stops at the next decoding step."""
        self.cancelled = True

    def emit(self, piece: str) -> None:
        if piece:
            self.text += piece
            if self.sink is not None:
                self.sink("text", piece)

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
        if self.sink is not None:
            self.sink("done", reason)


class RowsStopping(StoppingCriteria):
    """Per-row streaming and stopping; transformers calls it with the sequences after every step."""

    def __init__(self, rows: list[Row], tokenizer, eos_ids: set[int]):
        self.rows = rows
        self.streams = [TextStream(tokenizer, row.stop) for row in rows]
        self.eos_ids = eos_ids

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        now = time.perf_counter()
        for row, stream, token in zip(self.rows, self.streams, input_ids[:, -1].tolist(), strict=True):
            if row.finish_reason is not None:
                continue
            if row.cancelled:
                row.finish("cancelled")
                continue
            if row.first_token_at is None:
                row.first_token_at = now
            row.completion_tokens += 1
            if token in self.eos_ids and not row.ignore_eos:
                row.emit(stream.close())
                row.finish("stop")
                continue
            piece, stopped = stream.push(token)
            row.emit(piece)
            if stopped:
                row.finish("stop")
            elif row.completion_tokens >= row.max_new_tokens:
                row.emit(stream.close())
                row.finish("length")
        return torch.tensor([row.finish_reason is not None for row in self.rows], device=input_ids.device)

    def finish_all(self, reason: str) -> None:
        """After `generate` returned: rows still open ran out of room (the context, or the batch's budget)."""
        for row, stream in zip(self.rows, self.streams, strict=True):
            if row.finish_reason is None:
                row.emit(stream.close())
                row.finish(reason)


class Generator:
    """Owns `model.generate` for one model; get it with `generator_for(model, processor)`."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor
        self.lock = threading.Lock()
        self.kv_cache_dtype = "auto"
        self.prefill_chunk_size = PREFILL_CHUNK_SIZE

    def configure(self, kv_cache_dtype: str | None = None, prefill_chunk_size: int | None = None) -> None:
        """Memory settings of every later generation on this model (None: leave as it is)."""
        if kv_cache_dtype is not None:
            kv_cache_bits(kv_cache_dtype)  # refuses an unknown name now, not at the first question
            self.kv_cache_dtype = kv_cache_dtype
        if prefill_chunk_size is not None:
            self.prefill_chunk_size = max(1, prefill_chunk_size)

    @property
    def eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.processor.tokenizer.eos_token_id
        return set(ids) if isinstance(ids, (list, tuple)) else ({ids} if ids is not None else set())

    def run(self, inputs: Mapping, rows: list[Row], settings: GenerationSettings) -> list[Row]:
        """Generate every row of the left-padded batch `inputs` (one row per sample) under `settings`; returns
        the rows, each with its text and finish reason. Runs in the calling thread, one generation at a time."""
        room = self.model.config.context_length - inputs["input_ids"].shape[1]
        budget = max(1, min(max(row.max_new_tokens for row in rows), room))
        arguments = generate_arguments(settings, self.processor.pad_token_id, budget)
        stopping = RowsStopping(rows, self.processor.tokenizer, self.eos_ids)
        if any(row.ignore_eos for row in rows):  # `generate` would end those rows at EOS: rows stop themselves
            arguments["eos_token_id"] = []
        with self.lock, torch.inference_mode():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            cache = new_cache(self.kv_cache_dtype, self.model.config.get_text_config())
            if inputs["input_ids"].shape[1] > self.prefill_chunk_size:
                if cache is None:
                    from transformers import DynamicCache

                    cache = DynamicCache()
                inputs = self.model.prefill(dict(inputs), cache, self.prefill_chunk_size)
            if cache is not None:
                arguments[CACHE_KEY] = cache
            self.model.generate(**inputs, **arguments, stopping_criteria=StoppingCriteriaList([stopping]))
        stopping.finish_all("length")
        return rows

    def stream(self, inputs: Mapping, settings: GenerationSettings, stop: Sequence[str] = ()) -> Iterator[str]:
        """One sample's answer, piece by piece, for callers that want an iterator. Generation runs in a worker
        thread that is always joined before this iterator ends; a caller that stops reading cancels it."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        row = Row(settings.max_new_tokens, list(stop), sink=lambda kind, value: events.put((kind, value)))
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.run(inputs, [row], settings)
            except BaseException as error:  # re-raised in the caller's thread below
                failure.append(error)
            finally:
                events.put(("end", None))

        worker = threading.Thread(target=work, name="llamavid-generate")
        worker.start()
        try:
            while True:
                kind, value = events.get()
                if kind == "text":
                    yield value
                elif kind == "end":
                    break
        finally:
            row.cancel()
            worker.join()
        if failure:
            raise failure[0]


_GENERATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GENERATORS_LOCK = threading.Lock()


def generator_for(model, processor) -> Generator:
    """The generator of `model`: one per model object, so every caller in the process shares its lock."""
    with _GENERATORS_LOCK:
        generator = _GENERATORS.get(model)
        if generator is None:
            generator = _GENERATORS[model] = Generator(model, processor)
        return generator


__all__ = [
    "PREFILL_CHUNK_SIZE",
    "GenerationSettings",
    "Generator",
    "Row",
    "RowsStopping",
    "TextStream",
    "generate_arguments",
    "held_back_length",
    "generator_for",
]
