"""What a question will need in memory, worked out before anything is loaded, and what the device has.

A question's peak is the weights, the vision features it shows, and the larger of its two stages:

* the question-dependent stage (Q-Former and token generation): it streams over chunks of
  `config.qformer_chunk_size` frames, so beyond the kept visual tokens its transient is one chunk's casts, keys,
  float32 pooling and Q-Former activations, whatever the number of frames;
* the LLM prefill: the spliced prompt embeddings, the KV cache for the prompt and the answer (in the chosen
  `--kv-cache-dtype`), and the activations of one prefill chunk (`PREFILL_CHUNK_SIZE` positions).

The weights come from the model built on the meta device (shapes only, nothing read), in the dtype and bits it
will be loaded with; the workload from the input's header (a feature file's shape and subtitles, a video's
duration) tokenized by the real prompt builder. `check` refuses a plan that does not fit with one line: the
need, what is available, and the settings that would fit. The constants below were fitted to peaks measured on
release-shaped checkpoints (`benchmarks/long_video_memory.py`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LlamaVidError
from .kv_cache import bytes_per_element

GB = 1e9
RUNTIME_BYTES = 0.6e9  # Python, torch, tokenizers and the allocator's slack, measured on an idle loaded process
QFORMER_ROW_TENSORS = 12  # live (tokens x width) Q-Former tensors per row at its widest point
PREFILL_HIDDEN_TENSORS = 8  # live (positions x hidden) tensors in one decoder layer's forward
PREFILL_MLP_TENSORS = 3  # live (positions x intermediate) tensors (gate, up, their product)
# a plan is an estimate: one that needs nearly all of the device is refused with what would fit, rather than
# left to the kernel's out-of-memory killer or an allocator error halfway through a long prefill
HEADROOM = 0.05


class MemoryPlanError(LlamaVidError, RuntimeError):
    """A question that does not fit the device's memory, refused before anything was loaded."""

    def __init__(self, message: str, plan: Plan):
        super().__init__(message)
        self.plan = plan


@dataclass
class Workload:
    """What one question brings: `frames` shown, the stored features' shape and dtype, its prompt in tokens as
    `fixed_tokens + frames x tokens_per_frame` (visual tokens and a movie's subtitles grow with the frames),
    and frames to encode with the vision tower (0 for a feature file)."""

    frames: int
    feature_tokens: int  # tokens a frame of stored features has (1 + patches, or patches)
    feature_width: int
    feature_bytes: int  # bytes of a stored feature element (float16 feature files: 2)
    fixed_tokens: int  # prompt tokens that do not come with the frames
    tokens_per_frame: float  # prompt tokens a frame adds (visual tokens + subtitles)
    max_new_tokens: int = 512
    encode: bool = False  # frames go through the vision tower (a video or image, not a feature file)
    qformer_tokens: int = 32  # the Q-Former prompt's length in BERT tokens

    @property
    def prompt_tokens(self) -> int:
        return int(round(self.fixed_tokens + self.frames * self.tokens_per_frame))

    def with_frames(self, frames: int) -> Workload:
        return dataclasses.replace(self, frames=frames)


@dataclass
class Settings:
    """How the model runs: the compute dtype, LLM weight bits (None, 8, 4), the KV cache's dtype, the device."""

    dtype: torch.dtype = torch.bfloat16
    bits: int | None = None
    kv_cache_dtype: str = "auto"
    device: str = "cpu"
    prefill_chunk_size: int = 2048


@dataclass
class Plan:
    """Bytes per part of a question's peak; `parts` in the order the table prints them."""

    parts: dict[str, float] = field(default_factory=dict)
    stage: str = ""  # the stage where the peak lies
    stages: dict[str, float] = field(default_factory=dict)  # the peak of each stage
    available: float | None = None
    device: str = "cpu"

    @property
    def need(self) -> float:
        return sum(self.parts.values())

    @property
    def usable(self) -> float | None:
        """What the plan may take of what is available (HEADROOM kept free)."""
        return None if self.available is None else self.available * (1 - HEADROOM)

    @property
    def fits(self) -> bool:
        return self.available is None or self.need <= self.usable

    def table(self) -> str:
        rows = [f"{name:<40} {value / GB:8.2f} GB" for name, value in self.parts.items()]
        rows += [f"{'peak of the ' + name:<40} {value / GB:8.2f} GB" for name, value in self.stages.items()]
        rows.append(f"{'need (peak, at the ' + self.stage + ')':<40} {self.need / GB:8.2f} GB")
        if self.available is not None:
            rows.append(f"{'available on ' + self.device:<40} {self.available / GB:8.2f} GB")
            rows.append(f"{'usable (' + format(HEADROOM, '.0%') + ' kept free)':<40} {self.usable / GB:8.2f} GB")
        return "\n".join(rows)


def parameter_counts(config, bits: int | None) -> tuple[int, int, int]:
    """(vision-tower parameters, other parameters kept in the compute dtype, parameters quantized to `bits`) of
    the model `config` describes. With `bits` the LLM's decoder linear layers are quantized (bitsandbytes keeps
    embeddings, norms and the output layer in the compute dtype)."""
    from ..model.modeling import LlamaVidForConditionalGeneration

    with torch.device("meta"):
        model = LlamaVidForConditionalGeneration(config)
    vision, rest, quantized = 0, 0, 0
    for name, parameter in model.named_parameters():
        if name.startswith("vision_tower."):
            vision += parameter.numel()
        elif bits and name.startswith("language_model.") and ".layers." in name and parameter.dim() == 2:
            quantized += parameter.numel()
        else:
            rest += parameter.numel()
    return vision, rest, quantized


def plan_question(config, workload: Workload, settings: Settings) -> Plan:
    """The peak of one question under `settings` (see the module docstring for the parts)."""
    compute = torch.finfo(settings.dtype).bits // 8
    vision, rest, quantized = _counts(config, settings.bits)
    weights = rest * compute
    if settings.bits:
        weights += quantized * (settings.bits / 8 + (1 / 64 if settings.bits == 4 else 4 / 4096))
    parts = {"runtime": RUNTIME_BYTES, "weights (LLM, Q-Former, projectors)": weights}
    if workload.encode:
        parts["weights (vision tower)"] = vision * compute
    frames, vision_config, text = workload.frames, config.vision_config, config.get_text_config()
    parts["vision features"] = frames * workload.feature_tokens * workload.feature_width * workload.feature_bytes
    if workload.encode:  # the processed pixels, float32, while the tower runs
        parts["vision features"] += frames * 3 * vision_config.image_size**2 * 4
    hidden = text.hidden_size
    visual_tokens = frames * config.tokens_per_frame * hidden * compute
    # question stage: one chunk of frames (casts, keys, float32 pooling, Q-Former rows and cross-attention)
    rows = min(config.qformer_chunk_size, max(frames, 1))
    tokens, width = workload.feature_tokens, workload.feature_width
    qformer = config.qformer_config
    sequence = config.num_query + min(workload.qformer_tokens, config.qformer_max_length)
    per_row = tokens * width * (3 * compute + 8) + sequence * qformer.hidden_size * QFORMER_ROW_TENSORS * 4
    per_row += 2 * qformer.num_attention_heads * sequence * tokens * 4
    question = rows * per_row
    # prefill: embeddings, KV cache for prompt and answer, one chunk's activations, the mask over the prefix
    length = workload.prompt_tokens
    layers = text.num_hidden_layers
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // text.num_attention_heads
    total = length + workload.max_new_tokens
    kv = 2 * layers * heads * head_dim * total * bytes_per_element(settings.kv_cache_dtype, compute)
    chunk = min(length, settings.prefill_chunk_size)
    activations = chunk * (hidden * PREFILL_HIDDEN_TENSORS + text.intermediate_size * PREFILL_MLP_TENSORS) * compute
    activations += chunk * length + text.vocab_size * 4  # boolean mask rows, last-position logits
    if settings.kv_cache_dtype != "auto":  # one layer's cache dequantized while it is read
        activations += 2 * 2 * heads * head_dim * total * compute
    embeddings = length * hidden * compute
    prefill = embeddings + kv + activations
    base = sum(parts.values())
    # a feature file's features are mapped from it and hand their pages back once the visual tokens exist
    # (`MappedTensor`): the prefill runs without them
    paged_out = 0 if workload.encode else parts["vision features"]
    stages = {"question stage": base + question + visual_tokens, "prefill": base - paged_out + prefill}
    if stages["question stage"] >= stages["prefill"]:
        parts.update({"question stage (one chunk of frames)": question, "visual tokens": visual_tokens})
        stage = "question stage"
    else:
        parts.update({"prompt embeddings": embeddings, "KV cache": kv, "prefill activations": activations})
        if paged_out:  # the question stage's peak holds them
            del parts["vision features"]
            parts["vision features (paged out)"] = 0.0
        stage = "prefill"
    return Plan(parts, stage, device=settings.device, stages=stages)


_COUNTS: dict = {}


def _counts(config, bits):
    key = (config.to_json_string(use_diff=False), bits)
    if key not in _COUNTS:
        _COUNTS[key] = parameter_counts(config, bits)
    return _COUNTS[key]


def available_memory(device: str | torch.device) -> float | None:
    """Bytes free for a new job on `device`: free accelerator memory by device type (CUDA, MPS), the host's
    available RAM on a CPU; None where it cannot be told. The one place that asks a device about memory."""
    device = torch.device(device)
    if device.type == "cpu":
        return _host_available()
    if device.type == "mps":
        return float(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    if not torch.accelerator.is_available() or torch.accelerator.current_accelerator().type != device.type:
        return None
    # torch.accelerator's query (torch 2.9+), else the device type's own module (torch.cuda, torch.xpu, ...)
    query = getattr(torch.accelerator, "get_memory_info", None) or getattr(
        getattr(torch, device.type, None), "mem_get_info", None
    )
    return None if query is None else float(query(device)[0])


def _host_available() -> float | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return float(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def alternatives(config, workload: Workload, settings: Settings, available: float) -> list[str]:
    """Settings that would fit in `available` bytes, as flags: half precision (where the plan was float32), a
    quantized KV cache, 4-bit weights, both, or fewer frames; at most two of the first kinds."""
    found = []
    half = [("--dtype bfloat16", dict(dtype=torch.bfloat16))] if settings.dtype == torch.float32 else []
    trials = half + [
        ("--kv-cache-dtype int8", dict(kv_cache_dtype="int8")),
        ("--kv-cache-dtype int4", dict(kv_cache_dtype="int4")),
        ("--load-4bit", dict(bits=4)),
        ("--load-4bit --kv-cache-dtype int4", dict(bits=4, kv_cache_dtype="int4")),
    ]
    for flags, changes in trials:
        if all(getattr(settings, name) == value for name, value in changes.items()):
            continue
        if plan_question(config, workload, dataclasses.replace(settings, **changes)).need <= available:
            found.append(flags)
            if len(found) == 2:
                break
    low, high = 0, workload.frames  # the most frames that fit as set
    while low < high:
        middle = (low + high + 1) // 2
        if plan_question(config, workload.with_frames(middle), settings).need <= available:
            low = middle
        else:
            high = middle - 1
    if 0 < low < workload.frames:
        found.append(f"--max-frames {low}")
    return found


def check(config, workload: Workload, settings: Settings, available: float | None = None) -> Plan:
    """The plan of a question; `MemoryPlanError` (one line: need, available, what would fit) if it cannot fit.
    `available` defaults to what the device has now."""
    plan = plan_question(config, workload, settings)
    plan.available = available_memory(settings.device) if available is None else available
    if plan.fits:
        return plan
    biggest = sorted(plan.parts.items(), key=lambda item: -item[1])[:3]
    shares = ", ".join(f"{name} {value / GB:.1f}" for name, value in biggest)
    fitting = alternatives(config, workload, settings, plan.usable)
    hint = f"; would fit: {' or '.join(fitting)}" if fitting else "; no setting here fits: use a larger device"
    raise MemoryPlanError(
        f"this question needs about {plan.need / GB:.1f} GB at the {plan.stage} ({shares}; {workload.frames} "
        f"frames, {workload.prompt_tokens} prompt tokens) but {plan.available / GB:.1f} GB is available on "
        f"{settings.device} ({HEADROOM:.0%} of it kept free){hint}",
        plan,
    )


def check_before_loading(
    model: str | os.PathLike,
    question: str,
    max_new_tokens: int,
    *,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    bits: int | None = None,
    kv_cache_dtype: str = "auto",
    available: float | None = None,
    **inputs,
) -> Plan:
    """`check` for a question to the model folder `model`, reading only its config and tokenizers; `inputs` are
    `workload_for`'s (features=, video=, image=, fps=, max_frames=, template=)."""
    from ..model.processing import LlamaVidProcessor
    from .loading import model_config, resolve_device, resolve_dtype, stored_dtype

    path, config = model_config(model)
    processor = LlamaVidProcessor.from_pretrained(path, config=config)
    target = resolve_device(device)
    workload = workload_for(processor, question, max_new_tokens, **inputs)
    settings = Settings(resolve_dtype(dtype, target, stored=stored_dtype(config)), bits, kv_cache_dtype, str(target))
    return check(config, workload, settings, available)


def sample_workload(sample, max_new_tokens: int) -> Workload:
    """The workload of a built prompt (`llamavid.inference.inputs.Sample`) whose media are already encoded."""
    frames = sum(sample.item_frames[segment] for segment in sample.segments)
    block = sample.blocks[0] if sample.blocks else None
    shape = tuple(block.shape) if block is not None else (0, 0, 0)
    return Workload(
        frames=frames,
        feature_tokens=shape[1],
        feature_width=shape[2],
        feature_bytes=block.element_size() if block is not None else 2,
        fixed_tokens=len(sample.ids),
        tokens_per_frame=0.0,
        max_new_tokens=max_new_tokens,
        qformer_tokens=max((len(prompt.split()) * 2 + 2 for prompt in sample.prompts), default=0),
    )


def check_loaded(model, samples, max_new_tokens: int, kv_cache_dtype: str = "auto") -> Plan:
    """For a model already loaded, with its inputs' media already encoded: `MemoryPlanError` unless what the
    question stage and the prefill of `samples` (one batch) add fits what `model`'s device has free now."""
    return check_loaded_workloads(model, [sample_workload(sample, max_new_tokens) for sample in samples],
                                  kv_cache_dtype)


def check_loaded_workloads(model, workloads: list[Workload], kv_cache_dtype: str = "auto") -> Plan:
    """`check_loaded` for workloads told otherwise: a server's lower bound of a request before it fetches."""
    device = model.get_input_embeddings().weight.device
    available = available_memory(device)
    dtype = model.get_input_embeddings().weight.dtype
    settings = Settings(dtype, None, kv_cache_dtype, str(device))
    total = Plan(device=str(device), available=available)
    for workload in workloads:
        plan = plan_question(model.config, workload, settings)
        for name, value in plan.parts.items():
            if not name.startswith(("runtime", "weights", "vision features")):  # those are in memory already
                total.parts[name] = total.parts.get(name, 0.0) + value
        total.stage = plan.stage
    if total.fits:
        return total
    raise MemoryPlanError(
        f"this request needs about {total.need / GB:.1f} GB more at the {total.stage} but {available / GB:.1f} GB "
        f"is free on {device}: send fewer frames (max_frames), a shorter prompt or fewer max_tokens",
        total,
    )


# -- workloads from inputs, before any weight is read ------------------------------------------------------------


def feature_file_shape(path: str | os.PathLike) -> tuple[tuple[int, ...], int, list[list[str]], bool]:
    """(features shape, bytes per element, subtitles per frame, include_cls) of a feature file, from the
    safetensors header alone; an original `.pkl` must be read whole (pickle has no header)."""
    from .feature_files import read_feature_file

    path = Path(path)
    if path.suffix != ".pkl":
        import json

        from safetensors import safe_open

        from .feature_files import METADATA_KEY, FeatureFileError

        try:
            with safe_open(str(path), framework="pt") as handle:
                header = dict(handle.metadata() or {})
                piece = handle.get_slice("features")
                shape, dtype = tuple(piece.get_shape()), piece.get_dtype()
        except Exception as error:
            raise FeatureFileError(f"{path}: not a readable feature file ({error})") from None
        metadata = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else header
        subtitles = metadata.get("subtitles") or [[] for _ in range(shape[0])]
        include_cls = bool(metadata.get("include_cls", math.isqrt(shape[1]) ** 2 != shape[1]))
        size = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}.get(dtype, 2)
        return shape, size, subtitles, include_cls
    movie = read_feature_file(path)
    return tuple(movie.features.shape), movie.features.element_size(), movie.subtitles, movie.include_cls


def video_frames(path: str | os.PathLike, fps: float, max_frames: int | None) -> int:
    """Frames a video (or a folder of frames) will give at `fps`, at most `max_frames`, from its container's
    duration; a file that cannot be read is refused as `load_video` would refuse it."""
    from ..media.video import video_duration

    path = Path(path).expanduser()
    if path.is_dir():
        count = sum(1 for child in path.iterdir() if child.is_file())
    else:
        duration = video_duration(path)
        count = max(1, math.ceil(duration * fps)) if math.isfinite(duration) else max_frames or 1
    return min(count, max_frames) if max_frames else count


def workload_for(processor, question: str, max_new_tokens: int, *, features=None, video=None, image=None,
                 fps: float | None = None, max_frames: int | None = None, template: str | None = None) -> Workload:
    """The workload of `question` about a feature file, a video, an image or nothing, its prompt built by the
    real prompt builder over shape-only (meta) features; a prompt too long for the context is refused here."""
    from .encoder import MediaFeatures, movie_frames
    from .inputs import Turn, build_sample

    config = processor.config
    vision = config.vision_config
    if features is not None:
        shape, size, subtitles, include_cls = feature_file_shape(features)
        frames = shape[0]
        keep = movie_frames(frames, max_frames)  # what --max-frames keeps of a movie
        if keep is not None:
            frames, subtitles = len(keep), [subtitles[i] for i in keep]
        meta = torch.empty((frames, *shape[1:]), dtype=torch.float16, device="meta")
        media = MediaFeatures(meta, "movie", include_cls=include_cls, subtitles=subtitles)
        encode = False
    elif video is not None or image is not None:
        frames = 1 if image is not None else video_frames(video, fps or config.video_fps, max_frames)
        shape, size, encode = (frames, 1 + config.num_patches, vision.hidden_size), 2, True
        meta = torch.empty(shape, device="meta")
        media = MediaFeatures(meta, "image" if image is not None else "video")
    else:
        frames, shape, size, encode, media = 0, (0, 0, 0), 2, False, None
    turn = Turn("user", question, [media] if media is not None else [])
    sample = build_sample(processor, [turn], template=template)
    if media is not None:
        # what a frame adds: the prompt with no frames shown, by the same builder
        empty = dataclasses.replace(media, features=meta[:0], subtitles=[] if media.subtitles is not None else None)
        base = len(build_sample(processor, [Turn("user", question, [empty])], template=template).ids)
        per_frame = (len(sample.ids) - base) / max(frames, 1)
    else:
        base, per_frame = len(sample.ids), 0.0
    if not encode and features is None:
        size = 2
    qformer_tokens = int(processor.tokenize_qformer([question])[1].sum())
    return Workload(
        frames=frames,
        feature_tokens=shape[1],
        feature_width=shape[2],
        feature_bytes=size,
        fixed_tokens=base,
        tokens_per_frame=per_frame,
        max_new_tokens=max_new_tokens,
        encode=encode,
        qformer_tokens=qformer_tokens,
    )


__all__ = [
    "MemoryPlanError",
    "Plan",
    "Settings",
    "Workload",
    "alternatives",
    "available_memory",
    "check",
    "check_before_loading",
    "check_loaded",
    "check_loaded_workloads",
    "feature_file_shape",
    "plan_question",
    "sample_workload",
    "video_frames",
    "workload_for",
]
