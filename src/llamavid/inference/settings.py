"""The settings of inference that commands expose as flags: how media are sampled (`Sampling`) and how answers
are generated (`GenerationSettings`). Plain dataclasses, importable without torch, so that the command line
builds its flags from them quickly."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass(frozen=True)
class Sampling:
    """How a medium becomes frames; part of the feature-cache key."""

    fps: float | None = field(default=None, metadata={"help": "video frames per second (default: the model's, 1)"})
    max_frames: int | None = field(default=None, metadata={"help": "at most this many frames, spread uniformly"})
    num_frames: int | None = field(default=None, metadata={"help": "exactly this many frames, spread uniformly", "flag": False})
    decode_at_model_size: bool = field(default=True, metadata={"flag": False})
    pad: bool | None = field(default=None, metadata={"flag": False})
    """Pad images to a square; None: as the model config says."""

    def settings(self, kind: str, config) -> dict:
        """The resolved settings of a medium of `kind`: what its features depend on, besides content and tower."""
        if kind == "image":
            return {"kind": "image", "pad": config.pad_to_square if self.pad is None else self.pad}
        return {
            "kind": "video",
            "fps": self.fps or config.video_fps,
            "num_frames": self.num_frames,
            "max_frames": self.max_frames,
            "size": config.image_size if self.decode_at_model_size else None,
        }


@dataclass
class GenerationSettings:
    """How answers are sampled; the same seed gives the same answer."""

    temperature: float = field(default=0.0, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: keep the most likely tokens up to this mass"})
    max_new_tokens: int = field(default=512, metadata={"help": "longest answer, in tokens"})
    seed: int | None = field(default=None, metadata={"help": "seed of the sampling: same seed, same answer"})
    top_k: int | None = field(
        default=None,
        metadata={"help": "keep only the k most likely tokens when sampling (default: no such cut)", "flag": False},
    )

    def __post_init__(self):
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.top_k is not None and self.top_k < 0:
            raise UsageError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def batch_key(self) -> tuple:
        """Rows share one `generate` only with equal keys. A seeded row gets a key of its own: with company its
        sample would depend on the other rows."""
        if self.seed is not None:
            return ("seeded", id(self))
        if self.temperature == 0:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p, self.top_k)


__all__ = ["GenerationSettings", "Sampling"]
