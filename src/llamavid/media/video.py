"""Video loading with PyAV: the frames LLaMA-VID would pick, decoded as fast as the file allows.

The original decodes with decord and keeps frames ``0, step, 2*step, ...`` with
``step = round(native_fps / fps)``; :mod:`.sampling` keeps that rule for
constant-frame-rate video and falls back to timestamps for variable frame rates.

How we decode, and why:

* **Sequential by default.** At 1 fps on usual encodes (a keyframe every 2-10 s) every
  frame has to be decoded anyway, so seeking to each sample only adds work (several times
  slower than decoding straight through: `benchmarks/decode.py`).
  Decoding uses PyAV's frame + slice threading, and only the kept frames are converted to
  RGB, directly at the requested ``size`` in one swscale call.
* **Seeking only when samples are sparser than the keyframes** — for example 32 frames of
  an hour — judged from the container index (or a cheap packet scan): we seek to the last
  keyframe before a target only when it lies ahead of what is already decoded.
* **``approximate=True``** decodes keyframes only. It is many times faster and returns
  real keyframes with their true timestamps, but not the frames the exact rule would pick,
  and fewer of them when keyframes are sparser than the sampling interval.

Also handled: rotation metadata (frames come out upright), odd sizes, 10-bit and other
pixel formats, a first timestamp that is not 0 (timestamps count from the stream start),
corrupt tails (frames before the damage are kept, with a :class:`MediaWarning`). Sample
aspect ratio is ignored, as in the original. Folders of frame images and animated GIFs are
delegated to :mod:`.frames`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import UsageError
from . import frames as frame_sources
from .clip import VideoClip, resized_shape
from .containers import ffmpeg_reason, open_container
from .errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooLargeError,
    MediaWarning,
    NoVideoStreamError,
    UnsupportedMediaError,
)
from .images import check_dimensions
from .progress import make_progress
from .sampling import Selector, fps_step, original_indices, uniform_indices, uniform_times

__all__ = ["VideoClip", "load_video", "resized_shape", "video_duration"]  # the first and last live in .clip

logger = logging.getLogger(__name__)

#: Only consider seeking when samples are at least this far apart (seconds): below it the
#: keyframes of ordinary encodes are sparser than the samples and straight decoding wins.
SEEK_MIN_INTERVAL_S = 1.5
#: Seek only when it skips at least this much video (seconds); a seek costs a decoder flush.
SEEK_MIN_GAIN_S = 1.0
#: swscale filter for resizing; bicubic like the CLIP processor's PIL resize.
INTERPOLATION = "BICUBIC"
_PROGRESS_EVERY = 16
#: Refuse to start when the frames asked for would need more memory than this (bytes): an
#: hour of 4K at 1 fps and native size is 90 GB. The error suggests ``size`` or ``max_frames``.
MAX_OUTPUT_BYTES = 32 << 30


def load_video(
    path: str | os.PathLike,
    fps: float | None = 1.0,
    num_frames: int | None = None,
    max_frames: int | None = None,
    size: int | None = None,
    approximate: bool = False,
    progress: bool | None = None,
    *,
    folder_fps: float = 1.0,
    max_decoded_frames: int | None = None,
) -> VideoClip:
    """Decode and sample a video file, a folder of frame images, or an animated GIF.

    Args:
        path: video file (anything FFmpeg reads), folder of images, or animated image.
        fps: frames per second to keep (default 1, as the released video models were
            trained); ignored when ``num_frames`` is given.
        num_frames: keep this many frames spread uniformly instead of sampling at ``fps``.
        max_frames: cap; when ``fps`` sampling would give more, switch to ``max_frames``
            uniformly spread frames (the original has no cap).
        size: resize so the shortest edge is ``size`` pixels, aspect kept (see
            :func:`resized_shape`); ``None`` keeps the native size.
        approximate: decode keyframes only (much faster, not the exact frames; see module doc).
        progress: show a progress bar: ``None`` only on a terminal and past a second.
        folder_fps: the frame rate a folder of images is taken to have.
        max_decoded_frames: refuse (:class:`MediaTooLargeError`) a video that needs more frames
            decoded: before decoding when it is decoded straight through and its container
            counts its frames, else as soon as the count passes it (a server's bound on the
            work one request can ask for).

    Raises:
        MediaError: a subclass naming the path and the reason.
    """
    _check_args(fps, num_frames, max_frames)
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise MediaNotFoundError(os.fspath(path), "no such file or folder")

    if p.is_dir():
        return frame_sources.load_frame_folder(p, fps, num_frames, max_frames, size, frame_rate=folder_fps)
    if not p.is_file():
        raise UnsupportedMediaError(str(p), "not a regular file")
    if p.stat().st_size == 0:
        raise EmptyMediaError(str(p), "the file is empty (0 bytes)")
    try:
        with open(p, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise MediaError(str(p), f"cannot read the file: {error.strerror or error}") from None
    if head.startswith((b"GIF87a", b"GIF89a")):
        return frame_sources.load_animated_image(p, fps, num_frames, max_frames, size, max_decoded_frames)
    return _load_with_pyav(p, head, fps, num_frames, max_frames, size, approximate, progress, max_decoded_frames)


def video_duration(path: str | os.PathLike) -> float:
    """Seconds of a video file from its container, nothing decoded (nan when unknown, and for GIFs): what a
    memory plan needs to count frames before anything loads. A file `load_video` would refuse is refused here
    with the same error."""
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise MediaNotFoundError(os.fspath(path), "no such file")
    if p.stat().st_size == 0:
        raise EmptyMediaError(str(p), "the file is empty (0 bytes)")
    with open(p, "rb") as handle:
        head = handle.read(16)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return math.nan
    container = open_container(p, head)
    try:
        return _stream_info(container, _pick_stream(container, p)).duration
    finally:
        container.close()


def _check_args(fps: float | None, num_frames: int | None, max_frames: int | None) -> None:
    if num_frames is None and fps is None:
        raise ValueError("give fps or num_frames")
    if num_frames is None and not (fps > 0 and math.isfinite(fps)):
        raise UsageError(f"fps must be a positive number, got {fps!r}")
    for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and (int(value) != value or value < 1):
            raise UsageError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- PyAV path


@dataclass
class _StreamInfo:
    """What the container says before decoding; rates and counts may be estimates."""

    origin: float  # stream start time (s); timestamps are relative to it
    duration: float  # nan when unknown
    native_fps: float  # nan when unknown
    num_frames: int | None
    constant_rate: bool
    codec: str
    time_base: float
    duration_is_stream: bool = False  # the duration is this stream's own, not the container's


def _pick_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        raise NoVideoStreamError(str(path), f"no video stream (the file has {', '.join(kinds)} streams)")
    stream = streams[0]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None:
        raise UnsupportedMediaError(str(path), "the video codec has no decoder in this FFmpeg build")
    check_dimensions(path, ctx.width or 1, ctx.height or 1)
    return stream


def _stream_info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _StreamInfo:
    tb = float(stream.time_base) if stream.time_base else 1e-6
    if stream.start_time is not None:
        origin = stream.start_time * tb
    elif container.start_time is not None:
        origin = container.start_time / av.time_base
    else:
        origin = 0.0
    tagged = _parse_clock(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if stream.duration:
        duration = stream.duration * tb
    elif tagged is not None or container.duration:
        # Matroska states the end time of the stream (its own tag, or the segment for all
        # streams), not its length: subtract the start.
        end = tagged if tagged is not None else container.duration / av.time_base
        duration = end - origin if "matroska" in container.format.name else end
    else:
        duration = math.nan
    average = float(stream.average_rate) if stream.average_rate else math.nan
    guessed = float(stream.guessed_rate) if stream.guessed_rate else math.nan
    native = average if average > 0 else guessed
    # Metadata can call a VFR stream constant (Matroska); decoding double-checks timestamps.
    constant = native > 0 and not (guessed > 0 and abs(average - guessed) > 0.01 * guessed)
    count = stream.frames or None
    if count is None and duration > 0 and native > 0:
        count = max(1, round(duration * native))
    own = bool(stream.duration) or tagged is not None or len(container.streams) == 1
    return _StreamInfo(origin, duration, native, count, bool(constant), stream.codec_context.name, tb, own)


def _parse_clock(text: str | None) -> float | None:
    """``"HH:MM:SS.fraction"`` (Matroska DURATION tags) to seconds."""
    if not text:
        return None
    try:
        hours, minutes, seconds = text.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _plan(info: _StreamInfo, fps: float | None, num_frames: int | None, max_frames: int | None) -> Selector:
    """Turn the sampling request into a :class:`Selector` (see :mod:`.sampling`)."""
    count = num_frames
    if count is None and max_frames is not None:
        if info.constant_rate and info.num_frames:
            expected = len(original_indices(info.num_frames, info.native_fps, fps))
        else:
            expected = math.floor(info.duration * fps) + 1 if info.duration > 0 else math.inf
        if expected > max_frames:
            count = max_frames
    if count is None:
        if info.constant_rate:
            return Selector(by_index=True, step=fps_step(info.native_fps, fps))
        return Selector(by_index=False, step=1.0 / fps)
    if info.constant_rate and info.num_frames:
        return Selector(by_index=True, targets=uniform_indices(info.num_frames, count))
    if not info.duration > 0:
        raise _NeedDuration
    return Selector(by_index=False, targets=uniform_times(info.duration, count))


class _NeedDuration(Exception):
    """Uniform sampling of a stream whose container states no duration."""


def _load_with_pyav(path, head, fps, num_frames, max_frames, size, approximate, progress, limit=None) -> VideoClip:
    container = open_container(path, head)
    try:
        stream = _pick_stream(container, path)
        info = _stream_info(container, stream)
        try:
            selector = _plan(info, fps, num_frames, max_frames)
        except _NeedDuration:
            info.duration = _scan_duration(container, stream, info)
            selector = _plan(info, fps, num_frames, max_frames)
        _check_output_size(path, stream, info, selector, size)
        stream.codec_context.thread_type = "AUTO"
        decoder = _Decoder(container, stream, info, selector, size, path, limit)
        if approximate:
            stream.codec_context.skip_frame = "NONKEY"
            decoder.run_sequential(progress, approximate=True)
            decoding = "keyframes"
        else:
            keyframes = _keyframes_if_sparse(container, stream, info, selector)
            if keyframes is None and limit is not None and stream.frames > limit:
                # decoding straight through touches every frame: refuse now rather than after `limit` of them
                raise _too_many_frames(path, f"the video has {stream.frames} frames", limit)
            if keyframes is not None:
                decoder.run_seeking(keyframes, progress)
                decoding = "seeking"
            else:
                decoder.run_sequential(progress)
                decoding = "sequential"
                decoder = _resample_if_shorter(decoder, container, stream, info, progress)
        return decoder.clip(approximate, decoding)
    except MediaError:
        raise
    except av.error.FFmpegError as error:
        raise CorruptMediaError(str(path), ffmpeg_reason(error)) from None
    finally:
        container.close()


def _too_many_frames(path: Path, what: str, limit: int) -> MediaTooLargeError:
    return MediaTooLargeError(str(path), f"{what}, more than the limit of {limit} decoded frames a video")


def _resample_if_shorter(decoder, container, stream, info: _StreamInfo, progress) -> _Decoder:
    """Uniform targets spread over a stated length the stream does not have (a container claiming 3 hours that
    holds 2 frames) keep only the first frames: spread them again over the frames that were really decoded."""
    targets = decoder.selector.targets
    kept = len(decoder.frames)
    if targets is None or decoder.selector.done or kept * 2 >= len(targets) or decoder.decoded <= kept:
        return decoder
    logger.info("%s: the stream ends long before its stated length; sampling its %d frames again", decoder.path,
                decoder.decoded)
    container.seek(0, stream=stream, backward=True)
    selector = Selector(by_index=True, targets=uniform_indices(decoder.decoded, len(targets)))
    again = _Decoder(container, stream, info, selector, decoder.size, decoder.path, decoder.limit)
    again.skip_nonref = False
    again.run_sequential(progress)
    return again


def _check_output_size(path: Path, stream, info: _StreamInfo, selector: Selector, size: int | None) -> None:
    if selector.targets is not None:
        count = len(selector.targets)
    elif selector.by_index and info.num_frames:
        count = math.ceil(info.num_frames / selector.step)
    elif info.duration > 0:
        count = math.floor(info.duration / selector.step) + 1
    else:
        return
    width, height = resized_shape(stream.codec_context.width or 1, stream.codec_context.height or 1, size)
    needed = count * width * height * 3
    if needed > MAX_OUTPUT_BYTES:
        raise MediaTooLargeError(
            str(path),
            f"{count} frames of {width}x{height} need {needed / 2**30:.0f} GiB; "
            "pass a smaller size, a lower fps or max_frames",
        )


def _sample_interval(info: _StreamInfo, selector: Selector) -> float:
    if selector.targets is not None:
        n = len(selector.targets)
        span = info.num_frames / info.native_fps if selector.by_index else info.duration
        return span / n if n else math.inf
    return selector.step / info.native_fps if selector.by_index else selector.step


def _keyframes_if_sparse(container, stream, info: _StreamInfo, selector: Selector) -> np.ndarray | None:
    """Keyframe times (relative, s) when seeking could pay off, else ``None``."""
    interval = _sample_interval(info, selector)
    if not interval >= SEEK_MIN_INTERVAL_S or not info.native_fps > 0:
        return None
    raw = _indexed_keyframes(stream)
    if raw is None:
        raw = _scanned_keyframes(container, stream)
    if raw.size < 2:
        return None
    times = np.unique(raw * info.time_base - info.origin)
    if np.median(np.diff(times)) >= interval:
        return None
    return times


def _indexed_keyframes(stream) -> np.ndarray | None:
    """Keyframe decode times (stream time base) from the demuxer's index; ``None`` without a usable index,
    or on PyAV < 16, which does not expose it."""
    entries = getattr(stream, "index_entries", None)
    if entries is None or len(entries) <= 1:
        return None
    return np.array([e.timestamp for e in entries if e.is_keyframe], dtype=np.float64)


def _scanned_keyframes(container, stream) -> np.ndarray:
    """Keyframe decode times read from the packets (no decoding), then rewound to the start. Decode times,
    not presentation times, because that is what an index holds: both sources give the same answer."""
    raw = np.array([p.dts for p in container.demux(stream) if p.is_keyframe and p.dts is not None], np.float64)
    container.seek(0, stream=stream, backward=True)
    return raw


def _scan_duration(container, stream, info: _StreamInfo) -> float:
    last = max((p.pts for p in container.demux(stream) if p.pts is not None), default=None)
    container.seek(0, stream=stream, backward=True)
    if last is None:
        raise EmptyMediaError(container.name, "the video stream has no frames")
    frame_time = 1.0 / info.native_fps if info.native_fps > 0 else 0.0
    return last * info.time_base - info.origin + frame_time


#: Give up on a stream after this many undecodable packets (it is garbage, not a glitch).
MAX_PACKET_ERRORS = 32


def _decoded_frames(container, stream, errors: list[Exception], keyframes_only: bool = False, before=None):
    """Frames of ``stream`` in presentation order, skipping packets the decoder rejects.

    Decoding packet by packet (rather than ``container.decode``) lets one damaged packet
    cost one frame instead of the rest of the video, and drains the frames still buffered
    in the threaded decoder when the file ends early. Errors are appended to ``errors``.
    ``before(packet)`` runs ahead of each packet's decoding (to set ``skip_frame``).
    """
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.error.FFmpegError, EOFError) as error:  # the demuxer cannot go on
            errors.append(error)
            break
        if keyframes_only and packet.size and not packet.is_keyframe:
            continue
        if before is not None:
            before(packet)
        try:
            frames = packet.decode()  # the final empty packet flushes the decoder
        except (av.error.FFmpegError, EOFError) as error:
            errors.append(error)
            if len(errors) >= MAX_PACKET_ERRORS:
                break
            continue
        yield from frames
    if errors:  # the demuxer stopped before its flush packet: drain what the threads hold
        with contextlib.suppress(av.error.FFmpegError, EOFError):
            yield from stream.codec_context.decode(None)


class _Decoder:
    """Runs one decode pass, converting only kept frames; holds the results."""

    def __init__(self, container, stream, info: _StreamInfo, selector: Selector, size: int | None, path: Path,
                 limit: int | None = None):
        self.container, self.stream, self.info, self.selector = container, stream, info, selector
        self.size, self.path, self.limit = size, path, limit
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.indices: list[int] = []
        self.rotation = 0
        self._shape: tuple[int, int] | None = None  # decode-side (width, height) of the output
        self._display: tuple[int, int] = (stream.codec_context.width, stream.codec_context.height)
        self.decoded = 0
        self._last_time = -math.inf
        self.errors: list[Exception] = []
        # Skip decoding non-reference frames we will not keep (x264's default B-frames are
        # about half of all frames): only where frame index = time x rate holds (CFR with a
        # frame count in the index), as the skipped frames can no longer be counted.
        self.skip_nonref = (
            selector.by_index
            and bool(stream.frames)
            and info.constant_rate
            and info.duration > 0
            and abs(info.duration * info.native_fps - stream.frames) <= 1.0
        )
        self._skip_state: str | None = None

    def _before_packet(self, packet: av.Packet) -> None:
        if packet.pts is None or not self.skip_nonref:
            want = "DEFAULT"
        else:
            index = round((packet.pts * self.info.time_base - self.info.origin) * self.info.native_fps)
            want = "DEFAULT" if self.selector.is_target(index) else "NONREF"
        if want != self._skip_state:
            self.stream.codec_context.skip_frame = want
            self._skip_state = want

    def _index_from_time(self, time: float) -> int | None:
        """Frame index from a CFR timestamp, or ``None`` when the time is off the frame grid."""
        position = time * self.info.native_fps
        index = round(position)
        return index if abs(position - index) < 0.25 else None

    # -- conversion

    def _keep(self, frame: av.VideoFrame, time: float, index: int) -> None:
        if self._shape is None:
            check_dimensions(self.path, frame.width, frame.height)
            self.rotation = int(round((frame.rotation or 0) / 90.0)) * 90 % 360
            swap = self.rotation in (90, 270)
            display = (frame.height, frame.width) if swap else (frame.width, frame.height)
            out_w, out_h = resized_shape(*display, self.size)
            self._display = display
            self._shape = (out_h, out_w) if swap else (out_w, out_h)
        width, height = self._shape
        self.frames.append(
            frame.to_ndarray(width=width, height=height, format="rgb24", interpolation=INTERPOLATION)
        )
        self.times.append(time)
        self.indices.append(index)

    def _time(self, frame: av.VideoFrame, index: int) -> float:
        self._last_time = time = self._frame_time(frame, index)
        return time

    def _frame_time(self, frame: av.VideoFrame, index: int) -> float:
        if frame.pts is None:
            previous = self.times[-1] if self.times else 0.0
            return previous + 1.0 / self.info.native_fps if self.info.native_fps > 0 else float(index)
        return float(frame.pts * self.info.time_base - self.info.origin)

    # -- strategies

    def run_sequential(self, progress: bool | None, approximate: bool = False) -> None:
        info, selector = self.info, self.selector
        total = info.num_frames
        bar = make_progress(progress, total, desc=f"decoding {self.path.name}")
        frame_interval = 1.0 / info.native_fps if info.native_fps > 0 else math.nan
        count = 0
        last_index = -1
        first_time = None
        before = self._before_packet if self.skip_nonref and not approximate else None
        reported = 0
        try:
            for frame in _decoded_frames(self.container, self.stream, self.errors, approximate, before):
                index = count
                count += 1
                self._check_limit(count)
                time = self._time(frame, index)
                if first_time is None:
                    first_time = time
                if approximate:
                    index = round(time * info.native_fps) if info.native_fps > 0 else index
                elif self.skip_nonref:
                    grid = self._index_from_time(time)
                    if grid is None:  # not constant-rate after all: stop skipping, go by time
                        self._stop_skipping(selector, frame_interval)
                    else:
                        index = grid
                elif selector.by_index and selector.targets is None and self._drifted(time - first_time, index, frame_interval):
                    logger.info("%s: timestamps do not follow a constant rate; sampling by time", self.path)
                    selector.switch_to_time(self.times[-1] if self.times else -math.inf, selector.step * frame_interval)
                last_index = index
                if selector.keep(index, time):
                    self._keep(frame, time, index)
                if index - reported >= _PROGRESS_EVERY:  # by index: skipped frames count too
                    bar.update(index - reported)
                    reported = index
                if selector.done:
                    break
        finally:
            bar.close()
            self.decoded = count
        if not selector.done and not approximate:
            self._check_complete(last_index + 1)

    def _check_limit(self, decoded: int) -> None:
        if self.limit is not None and decoded > self.limit:
            raise _too_many_frames(self.path, f"decoding passed {self.limit} frames", self.limit)

    def _stop_skipping(self, selector: Selector, frame_interval: float) -> None:
        logger.info("%s: timestamps are off the constant-rate grid; sampling by time", self.path)
        self.skip_nonref = False
        self.stream.codec_context.skip_frame = "DEFAULT"
        if selector.targets is None:
            selector.switch_to_time(self.times[-1] if self.times else -math.inf, selector.step * frame_interval)
        else:  # explicit index targets become times on the nominal grid
            selector.by_index = False
            selector.targets = selector.targets / self.info.native_fps
            selector._tol = 1e-3

    def _drifted(self, time: float, index: int, frame_interval: float) -> bool:
        return abs(time - index * frame_interval) > 1.5 * frame_interval + 1e-3

    def run_seeking(self, keyframes: np.ndarray, progress: bool | None) -> None:
        """Seek to the last keyframe before a target whenever it lies past the decoded position."""
        info, selector, stream = self.info, self.selector, self.stream
        fps = info.native_fps
        bar = make_progress(progress, len(selector.targets) if selector.targets is not None else None,
                            desc=f"seeking {self.path.name}")
        position = 0.0  # time of the last decoded frame
        before = self._before_packet if self.skip_nonref else None
        frames = _decoded_frames(self.container, stream, self.errors, before=before)
        try:
            while not selector.done:
                target = selector.next_target()
                target_time = target / fps if selector.by_index else target
                if info.duration > 0 and target_time > info.duration:
                    break
                k = int(np.searchsorted(keyframes, target_time + 1e-3, side="right")) - 1
                if k >= 0 and keyframes[k] > position + SEEK_MIN_GAIN_S:
                    # Seek to the target itself: FFmpeg lands on the last keyframe at or before
                    # it. (Index times are decode times; seeking to one can land a GOP early.)
                    offset = math.floor((target_time + info.origin) / info.time_base)
                    self.container.seek(offset, stream=stream, backward=True, any_frame=False)
                    frames = _decoded_frames(self.container, stream, self.errors, before=before)
                kept = False
                for frame in frames:
                    self.decoded += 1
                    self._check_limit(self.decoded)
                    time = self._time(frame, self.decoded)
                    position = time
                    index = round(time * fps)
                    if selector.keep(index, time):
                        self._keep(frame, time, index)
                        kept = True
                        break
                bar.update(1)
                if not kept:
                    break  # end of stream
        except (av.error.FFmpegError, EOFError) as error:  # a failed seek
            self.errors.append(error)
        finally:
            bar.close()

    def _check_complete(self, decoded: int) -> None:
        """Record a problem when a full pass ended well before the stated end of the stream."""
        info = self.info
        if self.errors or not self.times:
            return
        if self.stream.frames and decoded < self.stream.frames - max(2, 0.02 * self.stream.frames):
            self.errors.append(EOFError(f"stream ended after {decoded} of {self.stream.frames} frames"))
            return
        # Matroska states no frame count but a duration; trust the container duration only
        # when no other stream (a longer audio track) could explain it.
        frame = 1.0 / info.native_fps if info.native_fps > 0 else 0.0
        if self.info.duration_is_stream:
            end = self._last_time + frame
            if info.duration > 0 and end < info.duration - max(3 * frame, 0.5):
                self.errors.append(EOFError(f"stream ended at {end:.2f} s of {info.duration:.2f} s"))

    # -- result

    def clip(self, approximate: bool, decoding: str) -> VideoClip:
        path = str(self.path)
        if not self.frames:
            if self.errors:
                raise CorruptMediaError(path, f"no frame could be decoded ({ffmpeg_reason(self.errors[0])})")
            raise EmptyMediaError(path, "the video stream has no frames")
        if self.errors:
            message = (
                f"{path}: video damaged or truncated ({ffmpeg_reason(self.errors[0])}); "
                f"returning the {len(self.frames)} frames that could be decoded"
            )
            warnings.warn(message, MediaWarning, stacklevel=4)
            logger.warning(message)
        frames = np.stack(self.frames)  # (T, h, w, 3)
        if self.rotation:
            # ffmpeg's display matrix angle is counter-clockwise, as is np.rot90.
            frames = np.ascontiguousarray(np.rot90(frames, k=self.rotation // 90, axes=(1, 2)))
        info = self.info
        duration = info.duration if info.duration > 0 else self.times[-1] + (1.0 / info.native_fps if info.native_fps > 0 else 0.0)
        return VideoClip(
            frames=frames,
            timestamps=np.asarray(self.times, dtype=np.float64),
            indices=np.asarray(self.indices, dtype=np.int64),
            duration=float(duration),
            native_fps=float(info.native_fps),
            width=int(self._display[0]),
            height=int(self._display[1]),
            codec=info.codec,
            num_source_frames=info.num_frames,
            rotation=self.rotation,
            source=path,
            approximate=approximate,
            extra={
                "container": self.container.format.name,
                "pixel_format": self.stream.codec_context.pix_fmt,
                "decoding": decoding,
            },
        )

