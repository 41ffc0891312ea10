"""Batching scheduler: requests that arrive together share one left-padded generation.

The original answered one request at a time (a semaphore around a worker). On a CPU or a GPU, one decoding
step for 16 sequences costs little more than for one, so a thread collects queued jobs (waiting `batch_wait_ms`
for company after the first), runs the compatible ones (same sampling settings and feature layout, up to
`max_batch_size`, in arrival order) as one batch through the model's generator, and each row's text goes back
to its own job as it is generated (`llamavid.inference.generation`: rows stop on their own, cancelled rows are
dropped, no row waits on another's answer beyond the longest one in its batch). Requests with a `seed` run
alone so that the seed alone decides their sample.

Fairness: the oldest waiting job always leads the next batch; jobs that cannot join it keep their place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..inference.generation import GenerationSettings, Row
from ..inference.inputs import Sample, collate

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request's generation: its prompt, its sampling and its row (budget, stop strings, where its text
    goes: `row.sink(kind, value)` gets ("text", str), ("done", finish_reason) or ("error", exception))."""

    sample: Sample
    settings: GenerationSettings
    row: Row
    batch_size: int = 0

    def cancel(self) -> None:
        """Safe from any thread; the row stops at the next decoding step."""
        self.row.cancel()


class BatchScheduler:
    """Owns the serving thread; `submit` from any thread."""

    def __init__(self, engine, max_batch_size: int = 16, batch_wait_ms: float = 20.0):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = True
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
            live = [job for job in self._pending if not job.row.cancelled]
            if not live:
                self._pending.clear()
                return []
            leader, batch, rest, media_key = live[0], [], deque(), None
            for job in live:
                key = job.sample.batch_key
                if (len(batch) < self.max_batch_size and job.settings.batch_key == leader.settings.batch_key
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
                    if job.row.finish_reason is None:
                        job.row.finish_reason = "error"
                        if job.row.sink is not None:
                            job.row.sink("error", error)

    def _run(self, batch: list[Job]) -> None:
        engine = self.engine
        inputs = collate(engine.processor, [job.sample for job in batch], engine.device)
        for job in batch:
            job.batch_size = len(batch)
        engine.generator.run(inputs, [job.row for job in batch], batch[0].settings)
