"""Stage 0 for tiny models: pretrain the vision tower with dense supervision, then freeze it.

The released models start from a pretrained EVA-CLIP that stays frozen; a toy model has no such tower, and one
learned only through the answer tokens never separates shape or motion (facts.md). So before the LLaMA-VID
stages the tiny tower learns, from the training frames alone, supervision that is not the QA answers:

* dense per-patch labels: the colour and shape of the object under each patch, background elsewhere;
* the position of each coloured object in the frame (its centre; absent colours are not penalised).

Both heads are small linear layers thrown away afterwards; only `vision_tower.*` is kept (saved as
`vision_tower.safetensors`) and later stages freeze it. Labels come from the synthetic generator's
`meta.json` (the shape tracks), rendered at the decoded frames' timestamps; frames are decoded from the videos
as training decodes them, so the tower sees exactly the pixels it will see later. Each frame is encoded on its
own, as LLaMA-VID does: no frame differences or temporal context.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError
from ..train.settings_record import changed_settings, field_defaults, settings_json
from .synthetic import COLOURS, SHAPES, ShapeTrack, SyntheticSettings, render_frame, track_position

logger = logging.getLogger(__name__)
NUM_CLASSES = 1 + len(COLOURS) * len(SHAPES)
VISION_FILE = "vision_tower.safetensors"
FIGURES_FILE = "figures.json"  # beside it: the settings it was trained with and its figures


@dataclass
class Stage0Settings:
    """Vision pretraining schedule (AdamW, linear warm-up then cosine)."""

    data_dir: str
    """A synthetic set written by `llamavid make-synthetic` (videos/, train.json, meta.json)."""
    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    position_weight: float = 4.0
    background_weight: float = 0.2
    """Weight of background patches in the class loss: most patches are background, and at full weight the
    tower learns to call every patch background first."""
    seed: int = 0
    grounding_steps: int = 0
    """Steps of Q-Former grounding after the tower (`llamavid.toy.grounding`); 0 leaves the Q-Former as is."""
    grounding_batch_size: int = 64
    grounding_learning_rate: float = 2e-3
    grounding_warmup_steps: int = 20
    grounding_unnamed_share: float = 0.0
    """Share of grounding prompts that name no object (the order questions); their target is every object."""

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"stage0.steps and stage0.batch_size must be >= 1 ({self.steps}, {self.batch_size})"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"stage0.learning_rate must be positive, got {self.learning_rate}")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"stage0.warmup_steps ({self.warmup_steps}) must be below stage0.steps ({self.steps})"
            )
        if not 0 <= self.grounding_unnamed_share < 1:
            raise ValueError(
                f"stage0.grounding_unnamed_share must be in [0, 1), got {self.grounding_unnamed_share}"
            )
        if self.grounding_steps and self.grounding_warmup_steps >= self.grounding_steps:
            raise ValueError(
                f"stage0.grounding_warmup_steps ({self.grounding_warmup_steps}) must be below "
                f"stage0.grounding_steps ({self.grounding_steps})"
            )


def patch_labels(label_map: torch.Tensor, image_size: int, patch_size: int) -> torch.Tensor:
    """(S0, S0) label map -> (P,) per-patch label: the most covered object class, background only when a
    patch holds less than a quarter of object pixels."""
    onehot = F.one_hot(label_map, NUM_CLASSES).permute(2, 0, 1).float()[None]  # (1, C, S0, S0)
    onehot = F.interpolate(onehot, size=(image_size, image_size), mode="area")
    cover = F.avg_pool2d(onehot, patch_size)[0].flatten(1).T  # (P, C)
    cover[:, 0] = torch.where(cover[:, 0] > 0.75, 1.0, 0.0)
    return cover.argmax(dim=1)


def frame_targets(
    tracks: list[ShapeTrack], settings: SyntheticSettings, time_s: float, image_size: int, patch_size: int
):
    """(patch labels (P,), positions (K, 2) in [0, 1], position mask (K,)) for one frame."""
    _, label_map = render_frame(tracks, settings, time_s)
    positions = torch.zeros(len(COLOURS), 2)
    present = torch.zeros(len(COLOURS))
    for track in tracks:
        if time_s >= track.enters:
            k = list(COLOURS).index(track.colour)
            x, y = track_position(track, settings, time_s)
            positions[k] = torch.tensor([x, y]) / settings.size
            present[k] = 1.0
    return patch_labels(torch.from_numpy(label_map), image_size, patch_size), positions, present


def load_frames(
    data_dir: Path, image_processor, config, split: str = "train", media_cache: dict | None = None
) -> dict[str, torch.Tensor]:
    """Decode every video of a split (`train` or `heldout`) at the model's fps and build the stage-0 targets.

    With `media_cache` (the recipe's, shared with the later stages) each video's processed frames are left
    there, so training does not decode them again."""
    from PIL import Image

    from ..media import load_video
    from ..train.data import decoded_key

    meta = json.loads((data_dir / "meta.json").read_text())
    settings = SyntheticSettings(**meta["settings"])
    videos = sorted({r["video"] for r in json.loads((data_dir / f"{split}.json").read_text())})
    pixels, labels, positions, present = [], [], [], []
    for name in videos:
        tracks = [ShapeTrack(**t) for t in meta["tracks"][Path(name).stem]]
        clip = load_video(data_dir / "videos" / name, fps=config.video_fps)
        pixels.append(
            image_processor([Image.fromarray(f) for f in clip.frames], return_tensors="pt")["pixel_values"]
        )
        if media_cache is not None:
            media_cache[decoded_key(data_dir / "videos" / name, config.video_fps)] = pixels[-1]
        for time_s in clip.timestamps:
            target = frame_targets(tracks, settings, float(time_s), config.image_size, config.patch_size)
            labels.append(target[0])
            positions.append(target[1])
            present.append(target[2])
    return {
        "pixels": torch.cat(pixels),
        "labels": torch.stack(labels),
        "positions": torch.stack(positions),
        "present": torch.stack(present),
    }


class Stage0Heads(nn.Module):
    """The throw-away heads: per-patch classes, per-colour positions from the CLS token, and each patch's own
    place in the frame (so a feature averaged over an object's patches still says where the object is: what a
    context token that attends to the object carries from frame to frame)."""

    def __init__(self, width: int):
        super().__init__()
        self.classes = nn.Linear(width, NUM_CLASSES)
        self.positions = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2 * len(COLOURS)))
        self.places = nn.Linear(width, 2)

    def forward(self, features: torch.Tensor):
        patches = features[:, 1:]  # (B, 1 + P, V) -> (B, P, V)
        pooled = features[:, 0]  # the CLS token: position is a whole-frame property
        return (
            self.classes(patches),
            self.positions(pooled).unflatten(1, (len(COLOURS), 2)),
            self.places(patches),
        )


def patch_places(num_patches: int) -> torch.Tensor:
    """(P, 2) centre (x, y) of every patch of a square grid, in [0, 1]."""
    side = math.isqrt(num_patches)
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def pretrain_vision(
    model, processor, settings: Stage0Settings, output_dir: str | Path | None = None, media_cache: dict | None = None
) -> dict:
    """Train `model.vision_tower` in place (then, with `grounding_steps`, the Q-Former's grounding); returns
    figures (patch accuracy, position error, attention mass on the named object, seconds)."""
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    torch.manual_seed(settings.seed)
    image_processor = processor.image_processor
    data = load_frames(Path(settings.data_dir), image_processor, model.config, media_cache=media_cache)
    tower = model.vision_tower.train()
    for parameter in tower.parameters():
        parameter.requires_grad_(True)
    _reinit_tower(tower)
    heads = Stage0Heads(model.config.vision_config.hidden_size)
    parameters = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.01)
    class_weights = torch.ones(NUM_CLASSES)
    class_weights[0] = settings.background_weight
    generator = torch.Generator().manual_seed(settings.seed)
    count = data["pixels"].shape[0]
    log = []
    for step in range(settings.steps):
        lr_scale = (
            (step + 1) / settings.warmup_steps
            if step < settings.warmup_steps
            else 0.5
            * (
                1
                + math.cos(
                    math.pi * (step - settings.warmup_steps) / (settings.steps - settings.warmup_steps)
                )
            )
        )
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * lr_scale
        batch = torch.randint(0, count, (settings.batch_size,), generator=generator)
        class_logits, positions, places = heads(tower(data["pixels"][batch]))
        class_loss = F.cross_entropy(
            class_logits.flatten(0, 1), data["labels"][batch].flatten(), weight=class_weights
        )
        mask = data["present"][batch][..., None]
        position_loss = ((positions - data["positions"][batch]) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        place_loss = ((places - patch_places(places.shape[1])) ** 2).mean()
        loss = class_loss + settings.position_weight * (position_loss + place_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == settings.steps - 1:
            log.append(
                {
                    "step": step,
                    "class_loss": round(class_loss.item(), 4),
                    "position_loss": round(position_loss.item(), 5),
                }
            )
            logger.info("stage0 step %d: %s", step, log[-1])
    figures = _evaluate(tower, heads, data)
    heldout = None
    heldout_file = Path(settings.data_dir) / "heldout.json"
    if heldout_file.is_file():  # frames of videos stage 0 never saw (the tower's real quality)
        heldout = load_frames(Path(settings.data_dir), image_processor, model.config, split="heldout")
        figures.update({f"heldout_{k}": v for k, v in _evaluate(tower, heads, heldout).items()})
    tower.eval()
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
    if settings.grounding_steps:
        from .grounding import pretrain_grounding

        figures.update(
            pretrain_grounding(
                model,
                processor.qformer_tokenizer,
                _with_features(model, data),
                _with_features(model, heldout) if heldout is not None else None,
                settings.grounding_steps,
                settings.grounding_batch_size,
                settings.grounding_learning_rate,
                settings.grounding_warmup_steps,
                settings.seed,
                settings.grounding_unnamed_share,
            )
        )
    logger.info("stage0: %s", {k: v for k, v in figures.items() if not k.endswith("log")})
    figures.update(
        stage0_cpu_s=time.process_time() - start_cpu, stage0_s=time.perf_counter() - start_wall, log=log
    )
    if output_dir is not None:
        save_vision_tower(model, output_dir, grounding=bool(settings.grounding_steps))
        record = {
            "settings": settings_json(settings),
            "model": tower_fingerprint(model.config),
            **{k: v for k, v in figures.items() if not k.endswith("log")},
        }
        (Path(output_dir) / FIGURES_FILE).write_text(json.dumps(record, indent=1))
    return figures


def tower_fingerprint(config) -> dict:
    """What stage 0's weights depend on beyond its own settings: the tower's and the Q-Former's configs. A
    recipe whose `model.tiny` changed must not reuse an old tower, even one whose tensors still load (one more
    vision layer would load the old ones and leave the new one random). Version stamps are left out."""
    def plain(sub) -> dict:
        fields = {k: v for k, v in sub.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
        return json.loads(json.dumps(fields, sort_keys=True, default=str))

    return {
        "vision_config": plain(config.vision_config),
        "qformer_config": plain(config.qformer_config),
        "num_query": config.num_query,
        "qformer_layernorm": config.qformer_layernorm,
    }


def finished_stage0(output_dir: str | Path, settings: Stage0Settings, config) -> dict | None:
    """The figures of a stage 0 already trained in `output_dir` with these very settings for this model config
    (so a rerun of the recipe, after a later stage failed, does not train it again); None when there is none or
    it differs."""
    output_dir = Path(output_dir)
    record_file = output_dir / FIGURES_FILE
    if not (output_dir / VISION_FILE).is_file() or not record_file.is_file():
        return None
    try:
        record = json.loads(record_file.read_text())
    except json.JSONDecodeError:
        return None
    saved = record.pop("settings", None)
    if not isinstance(saved, dict):
        return None
    if changed_settings(saved, settings_json(settings), field_defaults(settings)):
        return None
    if record.pop("model", None) != tower_fingerprint(config):
        return None
    return record


@torch.no_grad()
def _with_features(model, data: dict) -> dict:
    """The frozen tower's features of every frame (in chunks), beside the patch labels."""
    return {"features": model.get_vision_features(data["pixels"], batch_size=256), "labels": data["labels"]}


def _reinit_tower(tower: nn.Module) -> None:
    """transformers' InstructBLIP init (std 1e-10) makes all patches alike; start from a normal ViT init, with
    position embeddings large enough (std 0.3) that attention can tell where a patch is from the first steps
    (at std 0.02 the per-colour positions stayed at chance for hundreds of steps)."""
    with torch.no_grad():
        for name, parameter in tower.named_parameters():
            if name.endswith("position_embedding"):
                nn.init.normal_(parameter, std=0.3)
            elif parameter.dim() >= 2:
                nn.init.trunc_normal_(parameter, std=0.02)
            elif "layernorm" in name.lower() or "norm" in name.lower():
                parameter.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                parameter.zero_()


@torch.no_grad()
def _evaluate(tower, heads, data) -> dict:
    tower.eval()
    count = min(512, data["pixels"].shape[0])
    class_logits, positions, _ = heads(tower(data["pixels"][:count]))
    labels = data["labels"][:count]
    objects = labels > 0
    predicted = class_logits.argmax(-1)
    mask = data["present"][:count][..., None]
    error = ((positions - data["positions"][:count]).abs() * mask).sum() / mask.sum().clamp(min=1) / 2
    return {
        "patch_accuracy": (predicted == labels).float().mean().item(),
        "object_patch_accuracy": (predicted[objects] == labels[objects]).float().mean().item(),
        "position_error": error.item(),
    }


def save_vision_tower(model, output_dir: str | Path, grounding: bool = False) -> Path:
    """`vision_tower.safetensors` (the tower's weights; with `grounding`, the Q-Former's pretrained parts too)."""
    from safetensors.torch import save_file

    from .grounding import GROUNDING_PREFIXES

    prefixes = ("vision_tower.", *GROUNDING_PREFIXES) if grounding else ("vision_tower.",)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
    path = output_dir / VISION_FILE
    save_file(weights, str(path))
    return path


def load_vision_tower(model, path: str | Path) -> None:
    """Load a stage-0 `vision_tower.safetensors` (every tensor must fit; Q-Former parts load when present)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / VISION_FILE
    if not path.is_file():
        raise ModelLoadError(f"vision tower weights not found: {path}")
    weights = load_file(str(path))
    own = model.state_dict()
    bad = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    if bad or not weights:
        raise ModelLoadError(f"{path} does not fit this model's vision tower (first mismatch: {bad[:1]})")
    model.load_state_dict(weights, strict=False)


__all__ = [
    "Stage0Settings", "finished_stage0", "load_vision_tower", "pretrain_vision", "save_vision_tower", "tower_fingerprint"
]
