"""The one media encoder: an image, a video or a movie's feature file -> vision features (`MediaFeatures`).

The vision tower is the expensive, prompt-independent stage, so its output is a value we keep: `MediaEncoder`
looks it up in a `FeatureCache` under a key made of the content's sha256 (a file's bytes, or the bytes a server
received: the same content through any route is the same entry), how it was sampled (`Sampling`, resolved
against the model's config) and the vision tower's fingerprint. Chat, the server, its web page, the evaluator
and feature extraction all encode through it.

Images are padded to a square as the model config says (unless `Sampling.pad` says otherwise); video frames are
sampled at `fps` (the model's rate by default), decoded straight at the model's size unless
`decode_at_model_size` is off (the image processor then resizes full frames, as the original's evaluation did).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..media import MediaNotFoundError, load_image, load_video
from ..media.frames import IMAGE_SUFFIXES as FRAME_SUFFIXES
from ..media.sampling import uniform_indices
from ..model.processing import Video
from .feature_files import FeatureFile, FeatureFileError, read_feature_file
from .features import FeatureCache, cache_key, content_digest, vision_fingerprint
from .settings import Sampling

FEATURE_SUFFIXES = {".safetensors", ".pkl"}
IMAGE_SUFFIXES = (FRAME_SUFFIXES - {".gif"}) | {".ppm", ".pgm", ".jfif"}  # a .gif is read as a video


@dataclass(eq=False)  # a medium is itself: two encodings are equal only if they are one object
class MediaFeatures:
    """Vision-tower output of one medium: (F, T, V) features, CLS kept unless `include_cls` is False.

    `kind` "movie" marks a long video read from a feature file, shown in the released long-video layout (every
    frame followed by its `subtitles`)."""

    features: torch.Tensor
    kind: Literal["image", "video", "movie"]
    timestamps: list[float] = field(default_factory=list)
    include_cls: bool = True
    subtitles: list[list[str]] | None = None
    source: str | None = None
    fingerprint: str | None = None
    # a movie mapped from its feature file: hands the features' resident pages back once its tokens exist
    release_pages: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def is_video(self) -> bool:
        return self.kind != "image"

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


def movie_frames(total: int, max_frames: int | None):
    """Indices of the frames of a `total`-frame movie that `max_frames` keeps (uniformly spread), or None for all."""
    if not max_frames or total <= max_frames:
        return None
    return uniform_indices(total, max_frames)


class MediaEncoder:
    """Media -> `MediaFeatures` for one model, through a feature cache; see the module docstring. Vision passes
    run one at a time (the encoder may be shared by threads)."""

    def __init__(
        self,
        model,
        processor,
        cache: FeatureCache | None = None,
        sampling: Sampling | None = None,
        vision_batch_size: int | None = 32,
        temp_dir: str | os.PathLike | None = None,
    ):
        self.model = model
        self.processor = processor
        self.config = model.config
        self.cache = cache if cache is not None else FeatureCache()
        self.sampling = sampling or Sampling()
        self.vision_batch_size = vision_batch_size
        self.temp_dir = temp_dir
        self.max_decoded_frames: int | None = None  # a server's bound on the frames decoded from one video
        self._fingerprint: str | None = None
        self._lock = threading.RLock()

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.model.vision_tower.model.embeddings.patch_embedding.weight.dtype

    @property
    def fingerprint(self) -> str:
        """Digest of the vision tower and the image processing: keys the cache and stamps feature files."""
        if self._fingerprint is None:
            self._fingerprint = vision_fingerprint(self.model, self.processor.image_processor)
        return self._fingerprint

    def _stamped_by_whole_tower(self, movie: FeatureFile) -> bool:
        """Files extracted before fingerprints sampled the tower carry the digest of all of it: read it only then."""
        with self._lock:
            whole = vision_fingerprint(self.model, self.processor.image_processor, whole=True)
        return movie.fingerprint == whole

    # -- the one entry point -----------------------------------------------------------------------------------

    def encode(self, source, kind: str | None = None, sampling: Sampling | None = None) -> MediaFeatures:
        """Features of `source`: a path (image, video, folder of frames, feature file), bytes (with `kind`), a
        PIL image, a frame array (T, H, W, 3), `Video` or `FeatureFile`; `MediaFeatures` pass through. `kind` ("image" |
        "video") overrides what the file name suggests."""
        return self.encode_cached(source, kind, sampling)[0]

    def encode_cached(self, source, kind: str | None = None, sampling: Sampling | None = None, check_frames=None):
        """`encode`, and whether the features came from the cache. `check_frames(n)` runs once the frame count of
        decoded media is known, before the vision tower (a server refuses prompts that cannot fit there)."""
        sampling = sampling or self.sampling
        if isinstance(source, MediaFeatures):
            return source, True
        if isinstance(source, FeatureFile):
            return self.movie(source), False
        if isinstance(source, bytes):
            if kind is None:
                raise ValueError("encoding bytes needs their kind ('image' or 'video')")
            return self._encode_content(source, kind, sampling, f"<{kind} bytes>", check_frames)
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).expanduser()
            if kind is None and path.suffix.lower() in FEATURE_SUFFIXES:
                return self.load_movie(path), False
            if not path.exists():
                raise MediaNotFoundError(str(source), "no such file or folder")
            if kind is None:
                kind = "image" if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES else "video"
            return self._encode_content(path, kind, sampling, str(source), check_frames)
        return self._encode_in_memory(source, sampling), False

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The vision tower over (F, 3, S, S) pixels, in batches of `vision_batch_size`."""
        with self._lock, torch.inference_mode():
            return self.model.get_vision_features(
                pixels.to(self.device, self.vision_dtype), batch_size=self.vision_batch_size
            )

    def load_movie(self, path: str | os.PathLike) -> MediaFeatures:
        """A feature file (ours or the original's `.pkl`), checked against this model's vision tower."""
        return self.movie(read_feature_file(path, mapped=True, spill_dir=self.temp_dir), str(path))

    def movie(self, movie: FeatureFile, path: str | None = None) -> MediaFeatures:
        """A movie's features as this model shows them, once checked against its vision tower."""
        path = path or movie.metadata.get("source", "the movie")
        width, patches = self.config.vision_config.hidden_size, self.config.num_patches
        tokens = movie.features.shape[1] - (1 if movie.include_cls else 0)
        if movie.features.shape[-1] != width or tokens != patches:
            raise FeatureFileError(
                f"{path}: features of width {movie.features.shape[-1]} with {tokens} patches a frame do not fit this "
                f"model's vision tower (width {width}, {patches} patches): extract them again with this model"
            )
        if movie.fingerprint and movie.fingerprint != self.fingerprint and not self._stamped_by_whole_tower(movie):
            raise FeatureFileError(
                f"{path}: extracted with another vision tower (fingerprint {movie.fingerprint[:12]}, this model's "
                f"{self.fingerprint[:12]}): extract them again with this model"
            )
        if len(movie.subtitles) != movie.num_frames:
            raise FeatureFileError(f"{path}: {movie.num_frames} frames but {len(movie.subtitles)} subtitle lists")
        features, timestamps, subtitles = movie.features, list(movie.timestamps), movie.subtitles
        release = movie.release
        keep = movie_frames(movie.num_frames, self.sampling.max_frames)
        if keep is not None:  # --max-frames: frames spread uniformly over the movie, with their subtitles
            features, release = features[torch.from_numpy(keep)], None  # a copy: the mapping goes with `movie`
            timestamps = [timestamps[i] for i in keep]
            subtitles = [subtitles[i] for i in keep]
        return MediaFeatures(
            features,
            "movie",
            timestamps=timestamps,
            include_cls=movie.include_cls,
            subtitles=subtitles,
            source=str(path),
            fingerprint=movie.fingerprint,
            release_pages=release,
        )

    # -- decoding -----------------------------------------------------------------------------------------------

    def pixels(self, source, kind: str, sampling: Sampling) -> tuple[torch.Tensor, list[float]]:
        """Decode and process a file or bytes: (pixels (F, 3, S, S), frame times in seconds)."""
        settings = sampling.settings(kind, self.config)
        if kind == "image":
            return self.processor.preprocess(load_image(source), pad=settings["pad"]), [0.0]
        if isinstance(source, bytes):
            # PyAV reads files: the bytes go to a private temporary file, removed once the frames are read
            with tempfile.NamedTemporaryFile(dir=self.temp_dir, suffix=".video") as handle:
                handle.write(source)
                handle.flush()
                return self.pixels(Path(handle.name), kind, sampling)
        clip = load_video(
            source,
            fps=settings["fps"],
            num_frames=settings["num_frames"],
            max_frames=settings["max_frames"],
            size=settings["size"],
            progress=False,
            max_decoded_frames=self.max_decoded_frames,
        )
        return self.processor.preprocess(Video(clip.frames)), [float(t) for t in clip.timestamps]

    def _encode_content(self, source, kind: str, sampling: Sampling, shown: str, check_frames=None):
        if kind not in ("image", "video"):
            raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
        settings = sampling.settings(kind, self.config)
        key = cache_key(content_digest(source), settings, self.fingerprint)
        with self._lock:
            entry = self.cache.get(key)
        cached = entry is not None
        if cached and check_frames is not None:
            check_frames(entry["features"].shape[0])
        if not cached:
            pixels, times = self.pixels(source, kind, sampling)
            if check_frames is not None:
                check_frames(pixels.shape[0])
            entry = {
                "features": self.vision_features(pixels).cpu(),
                "timestamps": torch.tensor(times, dtype=torch.float64),
            }
            with self._lock:
                self.cache.put(key, entry)
        media = MediaFeatures(
            entry["features"], kind, timestamps=entry["timestamps"].tolist(), source=shown, fingerprint=self.fingerprint
        )
        return media, cached

    def _encode_in_memory(self, source, sampling: Sampling) -> MediaFeatures:
        is_video = isinstance(source, Video) or (isinstance(source, np.ndarray) and source.ndim == 4)
        pixels = self.processor.preprocess(source, pad=sampling.settings("image", self.config)["pad"])
        times = [float(t) for t in range(pixels.shape[0])]
        return MediaFeatures(
            self.vision_features(pixels).cpu(), "video" if is_video else "image", timestamps=times,
            fingerprint=self.fingerprint,
        )

    def with_sampling(self, **changes) -> Sampling:
        """This encoder's sampling with some fields changed (a request's own fps or frame limit)."""
        return replace(self.sampling, **changes)


__all__ = ["FEATURE_SUFFIXES", "IMAGE_SUFFIXES", "MediaEncoder", "MediaFeatures", "Sampling"]
