"""The `llamavid` video loader for vLLM: frames chosen by llamavid's own rule (`llamavid.media.load_video`: the
original's `round(native_fps / fps)` step at 1 fps, uniform past `max_frames`), decoded with PyAV, instead of
vLLM's default of evenly spaced frames. `llamavid export-vllm` names it in the folder, so vLLM selects it for
LLaMA-VID models without a flag.

vLLM's `num_frames` media option (default 32, `--media-io-kwargs '{"video": {"num_frames": N}}'`) is our
`max_frames`; `-1` lifts the cap. `fps` sets the sampling rate (default 1, as the released models were trained).
"""

from __future__ import annotations

import tempfile
from typing import Any

from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, VideoLoader

from ...media.video import load_video
from . import VIDEO_LOADER, VIDEO_PROCESSOR_TYPE

DEFAULT_FPS = 1.0


@VIDEO_LOADER_REGISTRY.register(VIDEO_LOADER, video_processor=VIDEO_PROCESSOR_TYPE)
class LlamaVidVideoLoader(VideoLoader):
    @classmethod
    def load_bytes(
        cls, data: bytes, num_frames: int = -1, fps: float = DEFAULT_FPS, **kwargs
    ) -> tuple[Any, dict[str, Any]]:
        # PyAV reads a file (it needs to seek for keyframes); the bytes are written once to a temporary one.
        with tempfile.NamedTemporaryFile(suffix=".video") as handle:
            handle.write(data)
            handle.flush()
            clip = load_video(handle.name, fps=fps, max_frames=num_frames if num_frames > 0 else None)
        metadata = {
            "total_num_frames": clip.num_source_frames or len(clip.frames),
            "fps": clip.native_fps,
            "duration": clip.duration,
            "video_backend": VIDEO_LOADER,
            "frames_indices": [int(i) for i in clip.indices],
            "do_sample_frames": False,
        }
        return clip.frames, metadata


__all__ = ["LlamaVidVideoLoader"]
