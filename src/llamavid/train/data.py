"""LLaVA-format training data, loaded lazily.

A data file is a JSON list (or JSON lines) of records `{"id", "image" | "video", "conversations"}`; `image`
is relative to `image_folder`, `video` to `video_folder`; a `video` ending in `.pkl` or `.safetensors` is a
long-video feature file relative to `feature_folder` (default: `video_folder`): the original's pickle
(`{"feats": float16 [T, 1 + N, V], "inputs": "<image>subtitle<image>..."}`) or what `llamavid extract-features`
writes, CLS dropped at load. A `.pkl` that is not there is looked for as `.safetensors` of the same name, so the
original's `long_videoqa.json` trains on features extracted by llamavid. Records without media are text-only.

Differences with the original: a sample that fails to load is not silently replaced by a random one; it is
counted and logged, and then either replaced by the next sample (`on_error="skip"`, the count is in
`stats`) or the run stops (`on_error="fail"`). Token-count mismatches are handled the same way
(`on_mismatch="mask"` masks and counts, as the weights were trained; `"fail"` stops).
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import LlamaVidError
from ..inference.feature_files import load_original_pickle, pickled_tensor, read_feature_file
from ..inference.inputs import movie_frames_text
from ..inference.settings import Sampling
from ..model.chat_templates import IMAGE_PLACEHOLDER
from ..model.processing import Video
from .preprocess import preprocess

MOVIE_SUFFIXES = (".pkl", ".safetensors")

logger = logging.getLogger(__name__)

MAX_SUBSTITUTIONS = 10
LOGGED_PROBLEMS = 5


class DataError(LlamaVidError, ValueError):
    """A training sample could not be used (missing file, bad record, token mismatch) and the settings say
    not to go on."""


@dataclass
class DataSettings:
    """Where the data is and how samples become tensors (the original's `DataArguments`)."""

    data_path: str
    """JSON list or JSON-lines file of LLaVA-format records."""
    image_folder: str | None = None
    video_folder: str | None = None
    feature_folder: str | None = None
    """Folder of long-video feature files, `.pkl` or `.safetensors` (default: `video_folder`)."""
    template: str = "imgsp_v1"
    """Conversation template: plain_guided (stage 1), imgsp_v1 (stages 2-3), vicuna_v1, llava_v1, llama_2."""
    model_max_length: int = 2048
    """Text ids are truncated to this before visual expansion (one id per placeholder), as in the original."""
    pad_images: bool | None = None
    """Pad images to a square ("pad" in the original: stages 2-3); None = the model config's pad_to_square."""
    video_fps: float | None = None
    """Frames a second sampled from videos; None = the model config's video_fps (1)."""
    max_frames: int | None = None
    """Cap on frames per video (uniformly spread); the original has none."""
    decode_size: int | None = None
    """Resize frames at decode time (shortest edge), cheaper than resizing full frames later."""
    on_error: Literal["skip", "fail"] = "skip"
    on_mismatch: Literal["mask", "fail"] = "mask"
    cache_media: bool = False
    """Keep decoded pixels in memory (small synthetic sets: decode each video once)."""
    cache_vision_features: bool = False
    """Stages with a frozen vision tower: run the tower once per image/video (in the data loader, no gradients)
    and keep its features in memory, so training steps skip it. Each frame is still encoded on its own; the
    features are exactly what the tower computes inside the model. For small sets (tiny recipes) only."""
    repeat_by_type: dict[str, int] | None = None
    """A training mix: records whose `type` field is a key here are used that many times an epoch (0 leaves them
    out), the rest once. The synthetic set tags its question types."""
    seed: int = 0

    def __post_init__(self):
        for kind, times in (self.repeat_by_type or {}).items():
            if not isinstance(times, int) or isinstance(times, bool) or times < 0:
                raise ValueError(f"data.repeat_by_type.{kind} must be a whole number (0 leaves it out), got {times!r}")
        if self.on_error not in ("skip", "fail"):
            raise ValueError(f"data.on_error must be 'skip' or 'fail', got {self.on_error!r}")
        if self.on_mismatch not in ("mask", "fail"):
            raise ValueError(f"data.on_mismatch must be 'mask' or 'fail', got {self.on_mismatch!r}")
        if self.model_max_length < 8:
            raise ValueError(f"data.model_max_length must be at least 8, got {self.model_max_length}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"data.max_frames must be at least 1, got {self.max_frames}")
        if self.video_fps is not None and self.video_fps <= 0:
            raise ValueError(f"data.video_fps must be positive, got {self.video_fps}")


def read_records(path: str | Path) -> list[dict]:
    """Records of a JSON list or JSON-lines file, with the fields every record needs checked up front."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training data file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON or JSON lines ({error.msg}, line {error.lineno})") from None
    for number, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
            raise DataError(f"{path}: record {number} has no 'conversations' list")
    if not records:
        raise DataError(f"{path}: no records")
    return records


def repeat_by_type(records: list[dict], repeats: dict[str, int] | None, source="data") -> list[dict]:
    """`records` with each one whose `type` is in `repeats` that many times (see DataSettings.repeat_by_type)."""
    if not repeats:
        return records
    present = {record.get("type") for record in records}
    missing = sorted(set(repeats) - present)
    if missing:
        raise DataError(
            f"data.repeat_by_type names {missing}, but no record of {source} has that 'type' "
            f"(types there: {sorted(t for t in present if isinstance(t, str)) or 'none'})"
        )
    mixed = [record for record in records for _ in range(repeats.get(record.get("type"), 1))]
    if not mixed:
        raise DataError(f"data.repeat_by_type {repeats} leaves no record of {source}")
    return mixed


def modality_lengths(records: list[dict]) -> list[int]:
    """The length the sampler groups by: words over all messages, positive for samples with media, negative for text-only ones."""
    lengths = []
    for record in records:
        words = sum(len(m.get("value", "").split()) for m in record["conversations"])
        lengths.append(words if ("image" in record or "video" in record) else -words)
    return lengths


def decoded_key(path, fps: float, max_frames: int | None = None, size=None) -> tuple:
    """Key of a video's processed frames in a shared media cache (the same file, sampled the same way)."""
    return ("decoded", str(Path(path).resolve()), float(fps), max_frames, size)


class SupervisedDataset(torch.utils.data.Dataset):
    """LLaVA-format samples -> dicts the `Collator` batches (see the module docstring)."""

    def __init__(self, settings: DataSettings, processor, vision_encoder=None, media_cache: dict | None = None):
        """Samples become tensors by `processor`'s rules (its tokenizer, pixel steps and config), frames as
        `settings` samples them; `vision_encoder` (pixels -> features with CLS, no gradients) is needed for
        `cache_vision_features`; `media_cache` may be shared by datasets of several stages (keyed by file and
        decoding settings)."""
        if settings.cache_vision_features and vision_encoder is None:
            raise ValueError("data.cache_vision_features needs the (frozen) vision tower to encode with")
        self.settings = settings
        self.vision_encoder = vision_encoder if settings.cache_vision_features else None
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.config = processor.config
        self.sampling = Sampling(fps=settings.video_fps, max_frames=settings.max_frames, pad=settings.pad_images,
                                 decode_at_model_size=False)
        self.records = repeat_by_type(read_records(settings.data_path), settings.repeat_by_type, settings.data_path)
        self.lengths = modality_lengths(self.records)
        self.stats: Counter = Counter()
        self.epoch = 0
        self._cache: dict = {} if media_cache is None else media_cache

    def __len__(self) -> int:
        return len(self.records)

    @property
    def modality_lengths(self) -> list[int]:
        return self.lengths

    def __getitem__(self, index: int) -> dict:
        for attempt in range(MAX_SUBSTITUTIONS):
            candidate = (index + attempt) % len(self.records)
            try:
                return self.load(candidate)
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 - every loading problem is counted and reported
                self._problem("load_errors", candidate, f"{type(error).__name__}: {error}")
                if self.settings.on_error == "fail":
                    raise DataError(f"sample {candidate} failed to load: {error}") from error
        raise DataError(f"{MAX_SUBSTITUTIONS} samples in a row from {index} failed to load; see the log")

    def _problem(self, kind: str, index: int, message: str) -> None:
        self.stats[kind] += 1
        record_id = self.records[index].get("id", index)
        level = logging.WARNING if self.stats[kind] <= LOGGED_PROBLEMS else logging.DEBUG
        logger.log(
            level,
            "%s in sample %s (%d so far): %s",
            kind.replace("_", " ")[:-1],
            record_id,
            self.stats[kind],
            message,
        )

    def load(self, index: int) -> dict:
        """One sample without substitution (raises on any problem)."""
        record = self.records[index]
        has_media = "image" in record or "video" in record
        media = self._media(record) if has_media else None
        movie_inputs = media.get("movie_inputs") if media else None
        rng = random.Random(f"{self.settings.seed}-{self.epoch}-{index}")
        result = preprocess(
            record["conversations"],
            self.tokenizer,
            self.settings.template,
            self.config.image_token_id,
            has_media,
            rng,
            movie_inputs=movie_inputs,
        )
        if result.mismatch:
            self._problem("mismatches", index, "; ".join(result.notes))
            if self.settings.on_mismatch == "fail":
                raise DataError(f"sample {record.get('id', index)}: {'; '.join(result.notes)}")
        self.stats["samples"] += 1
        sample = {"input_ids": result.input_ids, "labels": result.labels, "prompts": result.prompts}
        if media is None:
            if result.prompts:
                raise ValueError(
                    f"text-only sample has {len(result.prompts)} {IMAGE_PLACEHOLDER} placeholders"
                )
            return sample
        frames = media["frames"]
        if movie_inputs is None:
            sample.update(expand_each=frames * self.config.tokens_per_frame, per_segment=1)
        else:
            per_segment = frames * self.config.tokens_per_frame
            placeholders = sum(1 for i in result.input_ids if i == self.config.image_token_id)
            if placeholders != per_segment:
                raise ValueError(
                    f"long-video inputs hold {placeholders} placeholders for {frames} frames x "
                    f"{self.config.tokens_per_frame} tokens"
                )
            sample.update(expand_each=1, per_segment=per_segment)
        sample.update(
            {key: media[key] for key in ("pixel_values", "vision_features", "features_include_cls") if key in media}
        )
        return sample

    # -- media -----------------------------------------------------------------------------------------------

    def _media(self, record: dict) -> dict:
        settings = self.settings
        kind = "image" if "image" in record else "video"
        key = (
            kind,
            str(record[kind]),
            settings.image_folder if kind == "image" else settings.video_folder,
            settings.feature_folder,
            settings.pad_images,
            settings.video_fps,
            settings.max_frames,
            settings.decode_size,
            self.vision_encoder is not None,
        )
        if (settings.cache_media or self.vision_encoder is not None) and key in self._cache:
            return self._cache[key]
        if kind == "image":
            media = self._image(record["image"])
        elif str(record["video"]).endswith(MOVIE_SUFFIXES):
            media = self._movie(record["video"])
        else:
            media = self._video(record["video"])
        if self.vision_encoder is not None and "pixel_values" in media:
            with torch.no_grad():
                features = self.vision_encoder(media.pop("pixel_values"))
            media.update(vision_features=features.detach(), features_include_cls=True)
        if settings.cache_media or self.vision_encoder is not None:
            self._cache[key] = media
        return media

    def _path(self, folder: str | None, name: str, kind: str) -> Path:
        if folder is None and not Path(name).is_absolute():
            raise ValueError(f"a {kind} sample needs data.{kind}_folder (record path {name!r})")
        return Path(folder or "") / name

    def _image(self, name: str) -> dict:
        from PIL import Image

        from ..media import load_image

        image = load_image(self._path(self.settings.image_folder, name, "image"))
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        pixels = self.processor.preprocess(image, pad=self.sampling.settings("image", self.config)["pad"])
        return {"pixel_values": pixels, "frames": 1}

    def _video(self, name: str) -> dict:
        from ..media import load_video

        sampling = self.sampling.settings("video", self.config)
        path = self._path(self.settings.video_folder, name, "video")
        decoded = decoded_key(path, sampling["fps"], sampling["max_frames"], self.settings.decode_size)
        pixels = self._cache.get(decoded)  # stage 0 leaves the frames it decoded here
        if pixels is None:
            clip = load_video(path, fps=sampling["fps"], max_frames=sampling["max_frames"],
                              size=self.settings.decode_size)
            pixels = self.processor.preprocess(Video(clip.frames))  # video frames are never padded
        return {"pixel_values": pixels, "frames": pixels.shape[0]}

    def _movie(self, name: str) -> dict:
        """Long-video features: CLS dropped, each `<image>` repeated tokens_per_frame times."""
        path = self._path(self.settings.feature_folder or self.settings.video_folder, name, "video")
        extracted = path.with_suffix(".safetensors")
        if path.suffix == ".pkl" and not path.exists() and extracted.exists():
            path = extracted
        if path.suffix == ".pkl":
            array, inputs = load_original_pickle(path)
            features = pickled_tensor(array)[:, 1:]  # (T, 1 + N, V) -> (T, N, V)
        else:
            movie = read_feature_file(path)
            features = movie.features[:, 1:] if movie.include_cls else movie.features
            inputs = movie_frames_text(movie.subtitles)
        # the original's loader drops every "..." of the subtitles
        inputs = inputs.replace("...", "").replace(IMAGE_PLACEHOLDER, IMAGE_PLACEHOLDER * self.config.tokens_per_frame)
        return {"vision_features": features, "frames": features.shape[0], "movie_inputs": inputs}


__all__ = [
    "DataError", "DataSettings", "SupervisedDataset", "decoded_key", "modality_lengths", "read_records", "repeat_by_type"
]
