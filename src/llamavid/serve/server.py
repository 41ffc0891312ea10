"""What the API routes and the web page share: the engine, the fetcher, the batching scheduler, the settings.

A conversation's path to an answer, for both: fetch and encode its media (`encode`: the engine's one media
encoder, cached by content), build its prompt (`sample`: the one prompt builder), then `submit` it as a job to
the scheduler, the only caller of the model's generator in the process, which streams the row's text back to
the job's sink. Mistakes a client can make become `APIError`s (4xx) here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable

from ..errors import LlamaVidError
from ..inference.encoder import MediaFeatures
from ..inference.generation import GenerationSettings, Row
from ..inference.inputs import ContextLengthError, Sample, Turn, build_sample
from ..inference.memory_plan import MemoryPlanError, check_loaded
from ..media import MediaError
from .errors import APIError
from .fetch import MediaFetcher
from .scheduler import BatchScheduler, Job
from .schemas import MediaRef
from .settings import ServeSettings


class Server:
    def __init__(self, engine, settings: ServeSettings):
        self.engine = engine
        self.settings = settings
        self.temp_dir = tempfile.mkdtemp(prefix="llamavid-serve-")
        engine.encoder.temp_dir = self.temp_dir  # videos received as bytes are decoded from files in here
        self.fetcher = MediaFetcher(settings)
        self.scheduler = BatchScheduler(engine, settings.max_batch_size, settings.batch_wait_ms)

    def close(self) -> None:
        self.scheduler.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def encode(self, ref: MediaRef, data=None) -> tuple[MediaFeatures, bool]:
        """Fetch (under the limits, unless `data` is given: a file the server already trusts, like the web
        page's uploads) and encode one medium; also says whether its features came from the cache."""
        limit = self.settings.max_frames
        if ref.num_frames is not None and ref.num_frames > limit:
            raise APIError(f"num_frames {ref.num_frames} exceeds the server's limit of {limit} (--max-frames)")
        sampling = self.engine.encoder.with_sampling(
            fps=ref.fps or self.settings.fps,
            num_frames=ref.num_frames,
            max_frames=min(ref.max_frames or limit, limit),
        )
        data = self.fetcher.fetch(ref.url) if data is None else data
        try:
            return self.engine.encoder.encode_cached(data, ref.kind, sampling)
        except MediaError as error:
            raise APIError(f"the {ref.kind} could not be decoded: {error.reason}") from None

    def sample(self, turns: list[Turn], system: str | None = None) -> Sample:
        """The prompt of a conversation whose media are encoded; prompts that do not fit are the client's 400."""
        try:
            return build_sample(self.engine.processor, turns, system)
        except ContextLengthError as error:
            raise APIError(str(error), param="messages") from None
        except LlamaVidError as error:
            raise APIError(str(error)) from None

    def submit(
        self,
        sample: Sample,
        settings: GenerationSettings,
        sink: Callable[[str, object], None],
        max_tokens: int | None = None,
        stop: list[str] | None = None,
    ) -> Job:
        """Queue a generation; its row's budget is what was asked for, within what the context leaves."""
        room = self.engine.context_length - len(sample.ids)
        wanted = max_tokens or self.settings.default_max_tokens
        try:  # refuse what cannot fit in memory before any Q-Former or LLM work (a 413, not a killed server)
            check_loaded(self.engine.model, [sample], min(wanted, room), self.engine.generator.kv_cache_dtype)
        except MemoryPlanError as error:
            raise APIError(str(error), status=413) from None
        row = Row(min(wanted, room), [*sample.stop, *(stop or [])], sink=sink)
        return self.scheduler.submit(Job(sample, settings, row))
