"""The one log line of each request: id, media kinds and frames, cache hits, prompt and completion tokens, batch
size, time to first token and total time; the prompt text only with `--log-prompts`."""

from __future__ import annotations

import json
import logging
import time

logger = logging.getLogger("llamavid.serve")


class RequestLog:
    def __init__(self, request_id: str, log_prompts: bool):
        self.request_id = request_id
        self.log_prompts = log_prompts
        self.start = time.perf_counter()
        self.fields = ""

    def started(self, texts: list[str], sample, cache_hits: int) -> None:
        kinds = ",".join(m.kind for m in sample.media) or "none"
        frames = ",".join(str(m.num_frames) for m in sample.media) or "0"
        self.fields = f"media={kinds} frames={frames} cached={cache_hits} prompt_tokens={len(sample.ids)}"
        if self.log_prompts:
            self.fields += f" prompt={json.dumps(texts)}"

    def failed(self, status: int, message: str) -> None:
        logger.info("%s status=%d error=%s total=%.3fs", self.request_id, status, json.dumps(message),
                    time.perf_counter() - self.start)

    def finished(self, job, status: int) -> None:
        row = job.row
        ttft = f"{row.first_token_at - self.start:.3f}s" if row.first_token_at else "-"
        logger.info("%s status=%d %s completion_tokens=%d finish=%s batch=%d ttft=%s total=%.3fs", self.request_id,
                    status, self.fields, row.completion_tokens, row.finish_reason or "cancelled", job.batch_size, ttft,
                    time.perf_counter() - self.start)
