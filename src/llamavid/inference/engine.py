"""The chat engine shared by the CLI, the web demo and the HTTP API.

One object holds the model, the processor and a feature cache. The vision tower runs once per media file (its
output depends only on the file, the sampling and the tower, so it is cached in memory and optionally on disk);
each turn runs only the question-dependent part: Q-Former, token generation and the LLM.

Movies (precomputed feature files, spec sections 2.3, 4.8, 6.2) use the released long-video layout instead: one
user turn with the start prompt, every frame's tokens followed by its subtitle lines, the end prompt and the
question, which is also the Q-Former prompt of every frame. Later turns are plain text: the movie is shown once.

How later turns place the media: as in training (`imgsp_v1`, spec section 2.4), every user turn of a
conversation about a medium carries its own placeholder, and its visual tokens are computed with that turn's
question as the Q-Former prompt. The original CLI instead re-inserted the placeholder only into the newest turn
and re-encoded the media each time; we keep the training layout, which costs two tokens a frame per turn.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..model.chat_templates import IMAGE_PLACEHOLDER, get_template
from ..model.processing import Video
from .feature_files import FeatureFile, FeatureFileError, read_feature_file
from .features import FeatureCache, cache_key, file_digest, vision_fingerprint
from .inputs import ContextLengthError, Turn, build_sample, collate

FEATURE_SUFFIXES = {".safetensors", ".pkl"}
MOVIE_START = "Below is a movie. Memorize the content and answer my question after watching this movie."
MOVIE_END = "Now the movie end."
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}


@dataclass
class GenerationSettings:
    """How answers are sampled. temperature 0 means greedy; the same seed gives the same answer."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class MediaFeatures:
    """Vision-tower output of one image or video: (F, T, V) features, CLS kept unless `include_cls` is False."""

    features: torch.Tensor
    is_video: bool
    timestamps: list[float] = field(default_factory=list)
    include_cls: bool = True
    source: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


@dataclass
class Message:
    role: str  # "user" or "assistant"
    content: str


def _as_messages(messages) -> list[Message]:
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
    """Model + processor + feature cache; see the module docstring."""

    def __init__(
        self,
        model,
        processor,
        cache: FeatureCache | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        vision_batch_size: int = 32,
        decode_at_model_size: bool = True,
    ):
        """`decode_at_model_size` scales frames while decoding (fast); False decodes at the native size and lets
        the image processor resize, as the original did (evaluation uses it for fidelity)."""
        self.model = model
        self.processor = processor
        self.config = model.config
        self.cache = cache or FeatureCache()
        self.fps = fps or self.config.video_fps
        self.max_frames = max_frames
        self.vision_batch_size = vision_batch_size
        self.decode_at_model_size = decode_at_model_size
        self.token_cache_items = 16
        self._tokens: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._fingerprint: str | None = None
        self._lock = threading.Lock()

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

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def context_length(self) -> int:
        """Positions the LLM can attend over: its position table, stretched by linear RoPE scaling."""
        text = self.config.text_config
        scaling = getattr(text, "rope_parameters", None) or {}
        factor = scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear" else 1.0
        return int(text.max_position_embeddings * factor)

    # -- media -----------------------------------------------------------------------------------------------

    def encode_media(self, source) -> MediaFeatures:
        """Vision features of an image or video (path, PIL image, frame array, `Video`, or `MediaFeatures`),
        from the cache when this content was seen before with the same settings and tower."""
        if isinstance(source, (MediaFeatures, FeatureFile)):
            return source
        if isinstance(source, (str, os.PathLike)):
            if Path(source).suffix.lower() in FEATURE_SUFFIXES:
                return self.load_movie(source)
            return self._encode_file(Path(source))
        is_video = isinstance(source, Video) or (isinstance(source, np.ndarray) and source.ndim == 4)
        pixels = self.processor.preprocess(source)
        return MediaFeatures(self.vision_features(pixels), is_video=is_video)

    def _encode_file(self, path: Path) -> MediaFeatures:
        from ..media import MediaNotFoundError, load_image, load_video

        if not path.exists():
            raise MediaNotFoundError(str(path), "no such file or folder")
        is_image = path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        settings = {
            "kind": "image" if is_image else "video",
            "fps": self.fps,
            "max_frames": self.max_frames,
            "pad": self.config.pad_to_square,
            "decode_at_model_size": self.decode_at_model_size,
        }
        digest = file_digest(path) if path.is_file() else f"dir:{path.resolve()}:{path.stat().st_mtime_ns}"
        key = cache_key(digest, settings, self.fingerprint)

        def compute() -> dict[str, torch.Tensor]:
            if is_image:
                pixels, times = self.processor.preprocess(load_image(path)), [0.0]
            else:
                size = self.config.image_size if self.decode_at_model_size else None
                clip = load_video(path, fps=self.fps, max_frames=self.max_frames, size=size)
                pixels, times = self.processor.preprocess(Video(clip.frames)), list(clip.timestamps)
            return {
                "features": self.vision_features(pixels).cpu(),
                "timestamps": torch.tensor(times, dtype=torch.float64),
            }

        entry = self.cache.get_or_compute(key, compute)
        return MediaFeatures(
            entry["features"],
            is_video=not is_image,
            timestamps=entry["timestamps"].tolist(),
            source=str(path),
        )

    def load_movie(self, path: str | os.PathLike) -> FeatureFile:
        """A feature file (ours or the original's `.pkl`), checked against this model's vision tower."""
        movie = read_feature_file(path)
        width, patches = self.config.vision_config.hidden_size, self.config.num_patches
        tokens = movie.features.shape[1] - (1 if movie.include_cls else 0)
        if movie.features.shape[-1] != width or tokens != patches:
            raise FeatureFileError(
                f"{path}: features of width {movie.features.shape[-1]} with {tokens} patches a frame do not fit this "
                f"model's vision tower (width {width}, {patches} patches): extract them again with this model"
            )
        if movie.fingerprint and movie.fingerprint != self.fingerprint:
            raise FeatureFileError(
                f"{path}: extracted with another vision tower (fingerprint {movie.fingerprint[:12]}, this model's "
                f"{self.fingerprint[:12]}): extract them again with this model"
            )
        return movie

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Vision tower over (F, 3, S, S) pixels in batches of `vision_batch_size`."""
        with torch.inference_mode():
            return self.model.get_vision_features(
                pixels.to(self.device, self._vision_dtype()), batch_size=self.vision_batch_size
            )

    @property
    def fingerprint(self) -> str:
        """Digest of the vision tower and image processing: keys the cache and stamps feature files."""
        if self._fingerprint is None:
            self._fingerprint = vision_fingerprint(self.model, self.processor.image_processor)
        return self._fingerprint

    # -- prompts ---------------------------------------------------------------------------------------------

    def build_inputs(self, messages: Sequence, media, template: str | None = None) -> dict:
        """Model inputs for a conversation ending with a user turn: every user turn shows the media (if any)
        with its own question as the Q-Former prompt; a movie is shown once, in the first turn."""
        messages = _as_messages(messages)
        if not messages or messages[-1].role != "user":
            raise ValueError("The conversation must end with a user message")
        if isinstance(media, FeatureFile):
            return self._movie_inputs(messages, media, template)
        turns = [Turn(m.role, m.content) for m in messages]
        if media is not None:
            turns[next(i for i, t in enumerate(turns) if t.role == "user")].media = [media]
        sample = build_sample(self, turns, template=template)
        inputs = collate(self, [sample])
        if sample.media:
            inputs["visual_tokens"] = self.segment_tokens(sample)
        return inputs

    def segment_tokens(self, sample) -> torch.Tensor:
        """Visual tokens of every placeholder of `sample`, in order. Earlier turns' (medium, question) pairs
        come from a small cache, so a turn runs the Q-Former only for its own question."""
        pieces = []
        for segment, prompt in zip(sample.segments, sample.prompts, strict=True):
            media = sample.media[segment]
            key = (id(media.features), media.include_cls, prompt)
            if key not in self._tokens:
                ids, mask = self.processor.tokenize_qformer([prompt])
                with torch.inference_mode():
                    tokens = self.model.get_visual_tokens(
                        media.features.to(self.device, self._vision_dtype()),
                        ids.to(self.device),
                        mask.to(self.device),
                        torch.tensor([media.num_frames], device=self.device),
                        vision_features_include_cls=media.include_cls,
                    )
                self._tokens[key] = (
                    media.features,
                    tokens,
                )  # the features are kept so that their id stays theirs
                while len(self._tokens) > self.token_cache_items:
                    self._tokens.popitem(last=False)
            self._tokens.move_to_end(key)
            pieces.append(self._tokens[key][1])
        return torch.cat(pieces)

    def movie_text(self, movie: FeatureFile, question: str) -> str:
        """The long-video user message: start prompt, each frame's placeholder and subtitles, end prompt,
        question (no separators, as the original's movie script)."""
        frames = "".join(IMAGE_PLACEHOLDER + " ".join(lines) for lines in movie.subtitles)
        return f"{MOVIE_START}{frames}{MOVIE_END}\n{question}"

    def _movie_inputs(self, messages: list[Message], movie: FeatureFile, template: str | None) -> dict:
        question = messages[0].content.strip()
        if len(movie.subtitles) != movie.num_frames:
            raise FeatureFileError(f"{movie.num_frames} frames but {len(movie.subtitles)} subtitle lists")
        turns = [(m.role, m.content) for m in messages]
        turns[0] = ("user", self.movie_text(movie, question))
        prompt = get_template(template or self.config.chat_template).render(turns)
        ids = self.processor.tokenize(prompt, [1] * movie.num_frames)
        self._check_movie_length(len(ids), movie)
        qformer_ids, qformer_mask = self.processor.tokenize_qformer([question])
        features = movie.features[:, 1:] if movie.include_cls else movie.features  # the original drops CLS
        inputs = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "vision_features": features.to(self.device, self._vision_dtype()),
            "vision_features_include_cls": False,
            "media_frame_counts": torch.ones(movie.num_frames, dtype=torch.long),
            "qformer_input_ids": qformer_ids.expand(movie.num_frames, -1),
            "qformer_attention_mask": qformer_mask.expand(movie.num_frames, -1),
        }  # one segment per frame, each with its subtitles after it; the default segment order is frame order
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

    def _check_movie_length(self, length: int, movie: FeatureFile) -> None:
        limit = self.context_length
        if length < limit:
            return
        per_frame = (length - len(self.processor.tokenize(self.movie_text(_no_frames(movie), ""), []))) / max(
            movie.num_frames, 1
        )
        fit = int(max(0, limit - (length - per_frame * movie.num_frames) - 64) // max(per_frame, 1))
        raise ContextLengthError(
            f"The question and the movie need {length} tokens ({movie.num_frames} frames, {per_frame:.1f} tokens a "
            f"frame with subtitles) but the model's context is {limit} tokens: about {fit} frames fit"
        )

    def _vision_dtype(self) -> torch.dtype:
        return self.model.vision_tower.model.embeddings.patch_embedding.weight.dtype

    # -- chat ------------------------------------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence,
        media=None,
        template: str | None = None,
        settings: GenerationSettings | None = None,
        **generation,
    ) -> Iterator[str]:
        """Stream the assistant's answer to `messages` (the last one a user turn) about `media`, piece by piece."""
        settings = settings or GenerationSettings(**generation)
        features = self.encode_media(media) if media is not None else None
        if isinstance(features, FeatureFile) and _as_messages(messages)[0].role != "user":
            raise ValueError("A movie conversation must start with a user question")
        inputs = self.build_inputs(messages, features, template)
        chat_template = get_template(template or self.config.chat_template)
        yield from self._generate(inputs, settings, chat_template.stop_string)

    def _generate(self, inputs: dict, settings: GenerationSettings, stop: str) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        tokenizer = self.processor.tokenizer
        room = self.context_length - inputs["input_ids"].shape[1]
        kwargs = dict(
            **inputs,
            max_new_tokens=min(settings.max_new_tokens, room),
            do_sample=settings.temperature > 0,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        )
        if settings.temperature > 0:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        if stop and stop != tokenizer.eos_token:
            kwargs.update(stop_strings=[stop], tokenizer=tokenizer)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        errors: list[BaseException] = []

        def work():
            try:
                with self._lock, torch.inference_mode():
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    self.model.generate(**kwargs, streamer=streamer)
            except BaseException as error:  # surfaced in the caller's thread below
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        held, stopped = "", False
        for piece in streamer:
            if stopped:  # drain what generation still emits after the stop string
                continue
            held += piece
            cut = held.find(stop) if stop else -1
            if cut >= 0:
                held, stopped = held[:cut], True
                continue
            # hold back text that could be the start of the stop string
            safe = len(held) - _overlap(held, stop)
            if safe > 0:
                yield held[:safe]
                held = held[safe:]
        thread.join()
        if errors:
            raise errors[0]
        if held:
            yield held


def _no_frames(movie: FeatureFile) -> FeatureFile:
    return FeatureFile(movie.features[:0], [], [], movie.include_cls, movie.metadata)


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


__all__ = ["ChatEngine", "ContextLengthError", "GenerationSettings", "MediaFeatures", "Message"]
