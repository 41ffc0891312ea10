"""What the API routes and the web page share: the engine, the fetcher, the batching scheduler, the settings.

A conversation's path to an answer, for both: check what it asks for against the limits (`check_request`: media
count, text length, and the frames its media need at the least against the context, all before anything is fetched
or tokenized), fetch and encode its media (`encode`: the engine's one media encoder, cached by content, with the
frames decoded so far checked against the context before the vision tower), build its prompt (`sample`: the one
prompt builder), then `submit` it as a job to the scheduler, the only caller of the model's generator in the
process, which streams the row's text back to the job's sink. Mistakes a client can make become `APIError`s (4xx)
here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LlamaVidError
from ..inference.encoder import MediaFeatures
from ..inference.generation import GenerationSettings, Row
from ..inference.inputs import ContextLengthError, Sample, Turn, build_sample
from ..inference.memory_plan import MemoryPlanError, Workload, check_loaded, check_loaded_workloads
from ..media import MediaError, MediaTooLargeError
from .errors import APIError
from .fetch import MediaFetcher
from .scheduler import BatchScheduler, Job
from .schemas import ChatRequest, MediaRef
from .settings import ServeSettings
from .tempdir import ServerTempDir


class Server:
    def __init__(self, engine, settings: ServeSettings):
        self.engine = engine
        self.settings = settings
        self._temp = ServerTempDir()  # also sweeps the folders of servers that were killed
        self.temp_dir = str(self._temp.path)
        engine.encoder.temp_dir = self.temp_dir  # videos received as bytes are decoded from files in here
        engine.encoder.max_decoded_frames = settings.max_decoded_frames
        self.fetcher = MediaFetcher(settings)
        self.scheduler = BatchScheduler(engine, settings.max_batch_size, settings.batch_wait_ms)

    def close(self) -> None:
        self.scheduler.close()
        self._temp.remove()

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    def check_request(self, chat: ChatRequest) -> None:
        """Refuse, before fetching or tokenizing anything, a request over a limit: media of a kind over
        `--limit-mm-per-prompt`, text over `--max-prompt-chars`, media whose frames cannot fit the context even
        at one frame each, or a request that cannot fit the device's free memory even at that (a 413)."""
        refs = chat.media_refs
        for kind, limit in self.settings.media_limits.items():
            count = sum(ref.kind == kind for ref in refs)
            if count > limit:
                raise APIError(f"the request has {count} {kind}s; this server takes at most {limit} {kind}s a "
                               "request (--limit-mm-per-prompt)", param="messages")
        self.check_text(chat.turns, chat.system)
        self.check_frames(len(refs))
        self.check_memory_before_fetching(len(refs), chat.max_tokens)

    def check_memory_before_fetching(self, media: int, max_tokens: int | None) -> None:
        """The memory plan of the least this request can need (each medium one frame, no text, its answer's
        budget): what cannot fit even so is refused before anything is fetched or encoded; `submit` checks the
        request itself once it is built."""
        config = self.engine.model.config
        answer = min(max_tokens or self.settings.default_max_tokens, self.context_length)
        least = Workload(frames=media, feature_tokens=config.num_patches + 1,
                         feature_width=config.vision_config.hidden_size, feature_bytes=2, fixed_tokens=0,
                         tokens_per_frame=config.tokens_per_frame, max_new_tokens=answer)
        try:
            check_loaded_workloads(self.engine.model, [least], self.engine.generator.kv_cache_dtype)
        except MemoryPlanError as error:
            raise APIError(str(error), status=413) from None

    def check_text(self, turns: list[Turn], system: str | None = None) -> None:
        """Refuse a conversation whose text is over `--max-prompt-chars`, before tokenizing it."""
        chars = sum(len(turn.text) for turn in turns) + len(system or "")
        if chars > self.settings.max_prompt_chars:
            raise APIError(f"the request's text has {chars} characters; this server takes at most "
                           f"{self.settings.max_prompt_chars} (--max-prompt-chars)", param="messages")

    def check_frames(self, frames: int) -> None:
        """Refuse media whose `frames` alone would fill the context (before they reach the vision tower)."""
        tokens = frames * self.engine.model.config.tokens_per_frame
        if frames and tokens >= self.context_length:
            raise APIError(
                f"This model's maximum context length is {self.context_length} tokens, but the request's media "
                f"need at least {tokens} ({frames} frames x {self.engine.model.config.tokens_per_frame} tokens): "
                "send fewer images or videos, or a smaller max_frames in a video_url part", param="messages")

    def encode_request(self, chat: ChatRequest, fetched: list[list]) -> int:
        """Encode a request's fetched media (None: not fetched yet, a data: URL or a local file) in place of its
        references, the frames so far checked against the context before each vision pass; says how many came
        from the feature cache."""
        hits = frames = done = 0
        total = sum(len(data) for data in fetched)
        for turn, data in zip(chat.turns, fetched, strict=True):
            encoded = []
            for ref, source in zip(turn.media, data, strict=True):
                rest = total - done - 1  # media not decoded yet count one frame each

                def check(count, before=frames, rest=rest):
                    self.check_frames(before + count + rest)

                features, cached = self.encode(ref, source, check)
                frames += features.num_frames
                done += 1
                hits += cached
                encoded.append(features)
            turn.media = encoded
        return hits

    def encode(self, ref: MediaRef, data=None, check_frames=None) -> tuple[MediaFeatures, bool]:
        """Fetch (under the limits, unless `data` is given: fetched already, or a file the server trusts, like the
        web page's uploads) and encode one medium; also says whether its features came from the cache."""
        limit = self.settings.max_frames
        if ref.num_frames is not None and ref.num_frames > limit:
            raise APIError(f"num_frames {ref.num_frames} exceeds the server's limit of {limit} (--max-frames)")
        sampling = self.engine.encoder.with_sampling(
            fps=ref.fps or self.settings.fps,
            num_frames=ref.num_frames,
            max_frames=min(ref.max_frames or limit, limit),
        )
        data = self.fetcher.fetch_local(ref.url) if data is None else data
        try:
            return self.engine.encoder.encode_cached(data, ref.kind, sampling, check_frames)
        except MediaTooLargeError as error:
            raise APIError(f"the {ref.kind} is too large: {error.reason}", status=413) from None
        except MediaError as error:
            raise APIError(f"the {ref.kind} could not be decoded: {error.reason}") from None

    def sample(self, turns: list[Turn], system: str | None = None, page: bool = False) -> Sample:
        """The prompt of a conversation whose media are encoded; prompts that do not fit are the client's 400,
        told what a client can change (the server's own flags are not the client's to set; on the web `page`,
        neither is max_frames)."""
        try:
            return build_sample(self.engine.processor, turns, system)
        except ContextLengthError as error:
            message = (f"This model's maximum context length is {error.limit} tokens, but the prompt needs "
                       f"{error.length}{error.detail}: ")
            if page:
                message += "start over (Reset), with a shorter video if it has many frames"
            elif error.fit:  # max_frames must be at least 1: with no room for a frame, only fewer media help
                message += (f"send max_frames {error.fit} or less in each video_url part, fewer images or videos, "
                            "or a shorter conversation")
            elif error.fit == 0:
                message += "send fewer images or videos, or a shorter conversation"
            else:
                message += "send a shorter conversation"
            raise APIError(message, param="messages") from None
        except LlamaVidError as error:
            raise APIError(str(error)) from None

    def submit(
        self,
        sample: Sample,
        settings: GenerationSettings,
        sink: Callable[[str, object], None],
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        ignore_eos: bool = False,
    ) -> Job:
        """Queue a generation; its row's budget is what was asked for, within what the context leaves."""
        room = self.engine.context_length - len(sample.ids)
        wanted = max_tokens or self.settings.default_max_tokens
        try:  # refuse what cannot fit in memory before any Q-Former or LLM work (a 413, not a killed server)
            check_loaded(self.engine.model, [sample], min(wanted, room), self.engine.generator.kv_cache_dtype)
        except MemoryPlanError as error:
            raise APIError(str(error), status=413) from None
        row = Row(min(wanted, room), [*sample.stop, *(stop or [])], sink=sink, ignore_eos=ignore_eos)
        return self.scheduler.submit(Job(sample, settings, row))
