"""`ChatEngine`: a model with its media encoder, prompt builder and generator, for conversations.

The vision tower runs once per medium (`MediaEncoder`: its output depends only on the content, the sampling and
the tower, so it is cached in memory and optionally on disk); each turn runs only the question-dependent part:
the Q-Former, token generation and the LLM. The visual tokens of earlier (medium, question) pairs are kept too,
so a follow-up runs the Q-Former only for its own question.

How later turns show the media: as in training, every user turn of a conversation about a medium carries its
own placeholder, and its visual tokens are computed with that turn's question as the Q-Former prompt (the
original CLI re-inserted the placeholder only into the newest turn and re-encoded the media each time; this
costs two tokens a frame per turn). A movie is shown once, in the released long-video layout
(`llamavid.inference.inputs`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..model.modeling import VISUAL_INPUTS
from .encoder import MediaEncoder, MediaFeatures, Sampling
from .features import FeatureCache
from .generation import GenerationSettings, Row, generator_for
from .inputs import ContextLengthError, Sample, Turn, build_sample, collate
from .memory_plan import check_loaded

TOKEN_CACHE_ITEMS = 16


@dataclass
class Message:
    role: str  # "user" or "assistant"
    content: str


def as_messages(messages) -> list[Message]:
    """(role, text) pairs, {"role", "content"} dicts or Messages -> Messages."""
    out = []
    for message in messages:
        if isinstance(message, Message):
            out.append(message)
        elif isinstance(message, dict):
            out.append(Message(message["role"], message["content"]))
        else:
            out.append(Message(*message))
    return out


class ChatEngine:
    """Model + processor + media encoder + generator; see the module docstring."""

    def __init__(
        self,
        model,
        processor,
        cache: FeatureCache | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        vision_batch_size: int = 32,
        decode_at_model_size: bool = True,
        kv_cache_dtype: str | None = None,
    ):
        """`decode_at_model_size` scales frames while decoding (fast); False decodes at the native size and lets
        the image processor resize, as the original did (evaluation uses it for fidelity). `kv_cache_dtype`
        (`auto`, `int8`, `int4`) sets the KV cache's precision for every generation on this model."""
        self.model = model
        self.processor = processor
        self.config = model.config
        sampling = Sampling(fps=fps, max_frames=max_frames, decode_at_model_size=decode_at_model_size)
        self.encoder = MediaEncoder(model, processor, cache, sampling, vision_batch_size)
        self.generator = generator_for(model, processor)
        self.generator.configure(kv_cache_dtype=kv_cache_dtype)
        self._tokens: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        dtype: str | None = None,
        bits: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs,
    ) -> ChatEngine:
        from .loading import load_model

        model, processor = load_model(path, device=device, dtype=dtype, bits=bits)
        return cls(model, processor, cache=FeatureCache(cache_dir), **kwargs)

    @classmethod
    def for_evaluation(
        cls, model, processor, cache_dir: str | os.PathLike | None = None, memory_items: int = 8, **sampling
    ) -> ChatEngine:
        """An engine as benchmarks use it: frames decoded at their own size, then resized by the image processor,
        as the original's evaluation did; `sampling` is `fps`/`max_frames`."""
        return cls(
            model,
            processor,
            cache=FeatureCache(cache_dir, memory_items=memory_items),
            decode_at_model_size=False,
            **sampling,
        )

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def context_length(self) -> int:
        return self.config.context_length

    def encode_media(self, source) -> MediaFeatures:
        """Vision features of an image, a video or a movie's feature file (see `MediaEncoder.encode`)."""
        return self.encoder.encode(source)

    def load_movie(self, path: str | os.PathLike) -> MediaFeatures:
        return self.encoder.load_movie(path)

    # -- prompts ---------------------------------------------------------------------------------------------

    def sample(self, messages: Sequence, media=None, template: str | None = None) -> Sample:
        """The prompt of a conversation ending with a user turn: every user turn shows `media` (if any) with its
        own question as the Q-Former prompt; a movie is shown once, in the first turn."""
        turns = [Turn(m.role, m.content) for m in as_messages(messages)]
        first_user = next((turn for turn in turns if turn.role == "user"), None)
        if media is not None and first_user is not None:
            first_user.media = [self.encoder.encode(media)]
        return build_sample(self.processor, turns, template=template)

    def build_inputs(self, messages: Sequence, media=None, template: str | None = None) -> dict:
        """Model inputs (a batch of one) for `messages` about `media`."""
        return self._inputs(self.sample(messages, media, template))

    def segment_tokens(self, sample: Sample) -> torch.Tensor:
        """Visual tokens of every placeholder of `sample` (one medium an item), in order. Earlier turns'
        (medium, question) pairs come from a small cache, so a turn runs the Q-Former only for its own question."""
        pieces = []
        for segment, prompt in zip(sample.segments, sample.prompts, strict=True):
            media = sample.media[segment]
            key = (id(media.features), media.include_cls, prompt)
            if key not in self._tokens:
                ids, mask = self.processor.tokenize_qformer([prompt])
                with torch.inference_mode():
                    tokens = self.model.get_visual_tokens(
                        media.features.to(self.device),  # cast per chunk by the model
                        ids.to(self.device),
                        mask.to(self.device),
                        torch.tensor([media.num_frames], device=self.device),
                        vision_features_include_cls=media.include_cls,
                    )
                self._remember(key, media.features, tokens)
            pieces.append(self._recall(key))
        return torch.cat(pieces)

    def movie_tokens(self, sample: Sample, inputs: dict) -> torch.Tensor:
        """Visual tokens of a movie sample (every frame with the first question as its Q-Former prompt), from
        the collated `inputs`; later turns of the conversation ask the same and reuse them. Once they exist the
        movie's mapped features hand their pages back: the prefill, the peak of a long question, runs without
        them in memory."""
        movie = sample.media[0]
        key = (id(movie.features), "movie", sample.prompts[0] if sample.prompts else "")
        if key not in self._tokens:
            with torch.inference_mode():
                tokens = self.model.get_visual_tokens(
                    inputs["vision_features"],
                    inputs["qformer_input_ids"],
                    inputs["qformer_attention_mask"],
                    inputs["media_frame_counts"],
                    inputs["segment_media_index"],
                    vision_features_include_cls=inputs["vision_features_include_cls"],
                )
            self._remember(key, movie.features, tokens)
            if movie.release_pages is not None:
                movie.release_pages()
        return self._recall(key)

    def _remember(self, key: tuple, features: torch.Tensor, tokens: torch.Tensor) -> None:
        self._tokens[key] = (features, tokens)  # the features are kept so that their id stays theirs
        while len(self._tokens) > TOKEN_CACHE_ITEMS:
            self._tokens.popitem(last=False)

    def _recall(self, key: tuple) -> torch.Tensor:
        self._tokens.move_to_end(key)
        return self._tokens[key][1]

    # -- answers ---------------------------------------------------------------------------------------------

    def answer(
        self,
        messages: Sequence,
        media=None,
        template: str | None = None,
        settings: GenerationSettings | None = None,
        on_text: Callable[[str], None] | None = None,
        **generation,
    ) -> str:
        """The assistant's answer to `messages` (the last one a user turn) about `media`, generated in the calling
        thread; `on_text` receives each piece as it is generated."""
        settings = settings or GenerationSettings(**generation)
        sample = self.sample(messages, media, template)
        row = Row(settings.max_new_tokens, list(sample.stop))
        if on_text is not None:
            row.sink = lambda kind, value: on_text(value) if kind == "text" else None
        self.generator.run(self._generation_inputs(sample), [row], settings)
        return row.text

    def chat(
        self,
        messages: Sequence,
        media=None,
        template: str | None = None,
        settings: GenerationSettings | None = None,
        **generation,
    ) -> Iterator[str]:
        """Stream the assistant's answer to `messages` about `media`, piece by piece (see `Generator.stream`)."""
        settings = settings or GenerationSettings(**generation)
        sample = self.sample(messages, media, template)
        yield from self.generator.stream(self._generation_inputs(sample), settings, sample.stop)

    def answer_batch(
        self, samples: Sequence[Sample], settings: GenerationSettings, stops: Sequence[Sequence[str]] = ()
    ) -> list[str]:
        """Answers to samples that share a `batch_key`, generated as one batch; `stops[i]` adds stop strings to
        sample i's own end of turn. A batch that cannot fit the device's free memory is refused first
        (`MemoryPlanError`), before any Q-Former or LLM work."""
        extra = list(stops) or [()] * len(samples)
        rows = [Row(settings.max_new_tokens, [*s.stop, *more]) for s, more in zip(samples, extra, strict=True)]
        check_loaded(self.model, samples, settings.max_new_tokens, self.generator.kv_cache_dtype)
        inputs = collate(self.processor, list(samples), self.device)
        self.generator.run(inputs, rows, settings)
        return [row.text for row in rows]

    def _inputs(self, sample: Sample) -> dict:
        """Model inputs with the visual tokens made (beside the vision inputs they were made from)."""
        inputs = collate(self.processor, [sample], self.device)
        if sample.media:
            movie = sample.media[0].kind == "movie"
            inputs["visual_tokens"] = self.movie_tokens(sample, inputs) if movie else self.segment_tokens(sample)
        return inputs

    def _generation_inputs(self, sample: Sample) -> dict:
        """`_inputs` without the vision inputs, which `generate` does not need once the visual tokens exist: on
        an accelerator their copy would otherwise live through it."""
        inputs = self._inputs(sample)
        if "visual_tokens" in inputs:
            for key in VISUAL_INPUTS:
                if key != "visual_tokens":
                    inputs.pop(key, None)
        return inputs


__all__ = ["ChatEngine", "ContextLengthError", "GenerationSettings", "MediaFeatures", "Message", "as_messages"]
