"""Batching scheduler: requests that arrive together share one left-padded `model.generate`.

The original answered one request at a time (a semaphore around a worker). On a CPU or a GPU, one decoding
step for 16 sequences costs little more than for one, so a thread collects queued jobs (waiting `batch_wait_ms`
for company after the first), runs the compatible ones (same sampling settings and feature layout, up to
`max_batch_size`, in arrival order) as one batch, and routes each row's tokens back to its own job.

Per-row behaviour lives in one `StoppingCriteria` (`_Rows`): transformers calls it after every step with the
new tokens, and it returns which rows are finished. That is where each row's text is decoded incrementally,
its stop strings and token budget are checked, and cancelled rows (clients that went away) are dropped;
finished rows get padding until the whole batch is done, so no row waits on another's answer beyond the
longest one in its batch. Requests with a `seed` run alone so that the seed alone decides their sample.

Fairness: the oldest waiting job always leads the next batch; jobs that cannot join it keep their place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .prompts import Sample, collate

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request's generation; `sink(kind, value)` receives ("text", str), ("done", finish_reason) or
    ("error", exception), from the scheduler thread."""

    sample: Sample
    max_tokens: int
    sink: Callable[[str, object], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    cancelled: bool = False
    completion_tokens: int = 0
    first_token_at: float | None = None
    finish_reason: str | None = None
    batch_size: int = 0

    @property
    def sampling_key(self) -> tuple:
        if self.seed is not None:
            return ("seeded", id(self))
        if self.temperature == 0:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p)

    def cancel(self) -> None:
        """Called from any thread; the row stops at the next decoding step."""
        self.cancelled = True


class BatchScheduler:
    """Owns the generation thread; `submit` from any thread."""

    def __init__(self, engine, max_batch_size: int = 16, batch_wait_ms: float = 20.0):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = True
        self.batches_run = 0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name="llamavid-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Job:
        with self._cond:
            self._pending.append(job)
            self._cond.notify()
        return job

    def close(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout=5)

    def _next_batch(self) -> list[Job]:
        with self._cond:
            while self._running and not self._pending:
                self._cond.wait()
            if not self._running:
                return []
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._pending) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            live = [job for job in self._pending if not job.cancelled]
            if not live:
                self._pending.clear()
                return []
            leader, batch, rest, media_key = live[0], [], deque(), None
            for job in live:
                key = job.sample.batch_key
                if (len(batch) < self.max_batch_size and job.sampling_key == leader.sampling_key
                        and (not key or media_key in (None, key))):
                    batch.append(job)
                    media_key = media_key or key or None
                else:
                    rest.append(job)
            self._pending = rest
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if not self._running:
                    return
                continue
            try:
                self._run(batch)
            except Exception as error:  # one bad batch must not stop the server
                logger.exception("generation failed for a batch of %d", len(batch))
                for job in batch:
                    if job.finish_reason is None:
                        job.finish_reason = "error"
                        job.sink("error", error)

    def _run(self, batch: list[Job]) -> None:
        engine = self.engine
        inputs = collate(engine, [job.sample for job in batch])
        prompt_length = inputs["input_ids"].shape[1]
        room = engine.context_length - prompt_length
        rows = _Rows(batch, engine.processor.tokenizer, eos_ids(engine))
        for job in batch:
            job.batch_size = len(batch)
        leader = batch[0]
        tokenizer = engine.processor.tokenizer
        kwargs = dict(
            **inputs,
            max_new_tokens=max(1, min(max(job.max_tokens for job in batch), room)),
            do_sample=leader.temperature > 0,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            stopping_criteria=StoppingCriteriaList([rows]),
        )
        if leader.temperature > 0:
            kwargs.update(temperature=leader.temperature, top_p=leader.top_p, top_k=0)
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        with torch.inference_mode():
            if leader.seed is not None:
                torch.manual_seed(leader.seed)
            engine.model.generate(**kwargs)
        rows.finish_all("length")


def eos_ids(engine) -> set[int]:
    ids = engine.model.generation_config.eos_token_id
    if ids is None:
        ids = engine.processor.tokenizer.eos_token_id
    return set(ids) if isinstance(ids, (list, tuple)) else ({ids} if ids is not None else set())


class _Rows(StoppingCriteria):
    """Per-row bookkeeping, called by `generate` after each step; see the module docstring."""

    def __init__(self, jobs: list[Job], tokenizer, eos: set[int]):
        self.jobs = jobs
        self.tokenizer = tokenizer
        self.eos = eos
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.sent = [0] * len(jobs)  # characters of text already sent
        self.done = [False] * len(jobs)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        now = time.perf_counter()
        newest = input_ids[:, -1].tolist()
        for row, job in enumerate(self.jobs):
            if self.done[row]:
                continue
            if job.cancelled:
                self._finish(row, "cancelled")
                continue
            token = newest[row]
            if job.first_token_at is None:
                job.first_token_at = now
            job.completion_tokens += 1
            if token in self.eos:
                self._flush(row, final=True)
                self._finish(row, "stop")
                continue
            self.tokens[row].append(token)
            if self._flush(row, final=False):
                self._finish(row, "stop")
            elif job.completion_tokens >= job.max_tokens:
                self._flush(row, final=True)
                self._finish(row, "length")
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _flush(self, row: int, final: bool) -> bool:
        """Send the row's new text, holding back what could be the start of a stop string; True when a stop
        string has appeared (the text before it is sent, the rest dropped)."""
        job = self.jobs[row]
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        cut = min((i for i in (text.find(s, max(0, self.sent[row] - len(s))) for s in job.stop) if i >= 0),
                  default=-1)
        if cut >= 0:
            self._send(row, text[:cut])
            return True
        if final:
            self._send(row, text)
            return False
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            return False
        self._send(row, text[: len(text) - max((_overlap(text, s) for s in job.stop), default=0)])
        return False

    def _send(self, row: int, text: str) -> None:
        if len(text) > self.sent[row]:
            self.jobs[row].sink("text", text[self.sent[row]:])
            self.sent[row] = len(text)

    def _finish(self, row: int, reason: str) -> None:
        self.done[row] = True
        job = self.jobs[row]
        job.finish_reason = reason
        job.sink("done", reason)

    def finish_all(self, reason: str) -> None:
        """After `generate` returns: rows still open ran out of room (the context or max_new_tokens)."""
        for row in range(len(self.jobs)):
            if not self.done[row]:
                self._flush(row, final=True)
                self._finish(row, reason)


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
