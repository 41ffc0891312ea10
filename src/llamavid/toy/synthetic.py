"""A synthetic moving-shapes video QA set, written as any user's LLaVA-format data.

Each video: 64x64 pixels (or larger), `seconds` (>= 6) long, encoded with PyAV (lossless H.264, so a seed always
gives the same pixels) at `encode_fps`, so sampling at 1 fps gives one frame a second. One or two shapes (circle,
square, triangle) in four colours move in a straight line (left, right, up, down) on a plain background; about
`two_shape_share` of the videos have a second shape (a different colour and shape) that enters later. Questions,
several phrasings each, single-word answers:

* colour: "What colour is the circle?" -> red | green | blue | yellow
* shape: "What shape is the red object?" -> circle | square | triangle
* direction: "Which way is the red circle moving?" -> left | right | up | down
* order (two-shape videos): "Which shape appeared first?" / "Which colour appeared first?" (no single frame
  answers it: both shapes are visible in the later frames)

Answers are drawn from shuffled decks rather than independently, so every answer of a question type is equally
common and the majority-answer baseline stays at about 1/3 or below. The split is by video (held-out videos
are never seen in training); everything is deterministic for a seed.

Layout written: `<out>/videos/<id>.mp4`, `<out>/train.json`, `<out>/heldout.json` (LLaVA records with
`video` relative to `<out>/videos`, the question `type` and one human/gpt exchange each; held-out records also
carry `answer`), `<out>/meta.json`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUND = (128, 128, 128)

PHRASINGS = {
    "colour": (
        "What colour is the {shape}?",
        "Which colour does the {shape} have?",
        "Tell me the colour of the {shape}.",
        "The {shape} is what colour?",
    ),
    "shape": (
        "What shape is the {colour} object?",
        "Which shape is {colour}?",
        "What is the shape of the {colour} object?",
        "The {colour} object is which shape?",
    ),
    "direction": (
        "Which way is the {colour} {shape} moving?",
        "In which direction does the {colour} {shape} move?",
        "Where is the {colour} {shape} going: left, right, up or down?",
        "What direction does the {colour} {shape} travel?",
    ),
    "order_shape": (
        "Which shape appeared first?",
        "Which shape was in the video first?",
        "What shape came first?",
    ),
    "order_colour": (
        "Which colour appeared first?",
        "What colour was the first shape?",
        "Which colour showed up first?",
    ),
}
ONE_WORD = " Answer with one word."


@dataclass
class SyntheticSettings:
    """Size and difficulty of the set. 2000 videos by default: a few hundred a toy model learns by heart instead of
    generalising (docs/experiments.md)."""

    num_videos: int = 2000
    heldout_videos: int = 200
    size: int = 64
    seconds: int = 6
    encode_fps: int = 8
    two_shape_share: float = 0.6
    object_size: int = 16
    travel: int = 26
    """Pixels a shape moves over the video."""
    seed: int = 0

    def __post_init__(self):
        if self.size < 64:
            raise UsageError(f"synthetic.size must be at least 64 pixels, got {self.size}")
        if self.seconds < 6:
            raise UsageError(f"synthetic.seconds must be at least 6, got {self.seconds}")
        if not 0.5 <= self.two_shape_share <= 1.0:
            raise UsageError(f"synthetic.two_shape_share must be in [0.5, 1], got {self.two_shape_share}")
        if not 0 < self.heldout_videos < self.num_videos:
            raise UsageError(
                f"synthetic.heldout_videos ({self.heldout_videos}) must be between 1 and num_videos - 1 "
                f"({self.num_videos - 1})"
            )
        if self.object_size + self.travel + 4 > self.size:
            raise UsageError("synthetic.object_size + synthetic.travel must leave room in the frame (size)")


class Deck:
    """Draws values so that each appears equally often (a shuffled deck, refilled when empty)."""

    def __init__(self, values, rng: random.Random):
        self.values, self.rng, self.cards = list(values), rng, []

    def draw(self, exclude=()):
        for _ in range(2 * len(self.values)):
            if not self.cards:
                self.cards = list(self.values)
                self.rng.shuffle(self.cards)
            for position, card in enumerate(self.cards):
                if card not in exclude:
                    return self.cards.pop(position)
            self.cards = []
        raise ValueError(f"no value left outside {exclude}")


@dataclass
class ShapeTrack:
    shape: str
    colour: str
    direction: str
    start: tuple[float, float]
    enters: float
    primary_rank: int = 0


def shape_mask(shape: str, size: int, cx: float, cy: float, side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    half = side / 2
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= half**2
    if shape == "square":
        return (np.abs(xx - cx) <= half * 0.9) & (np.abs(yy - cy) <= half * 0.9)
    top = cy - half
    rows = (yy - top) / side  # 0 at the apex, 1 at the base
    return (rows >= 0) & (rows <= 1) & (np.abs(xx - cx) <= rows * half)


def render_frame(
    tracks: list[ShapeTrack], settings: SyntheticSettings, time: float
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frame (S, S, 3) and a label map (S, S): 0 background, else 1 + colour * 3 + shape of the top shape."""
    size = settings.size
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    labels = np.zeros((size, size), dtype=np.int64)
    for track in tracks:
        if time < track.enters:
            continue
        cx, cy = track_position(track, settings, time)
        mask = shape_mask(track.shape, size, cx, cy, settings.object_size)
        frame[mask] = COLOURS[track.colour]
        labels[mask] = 1 + list(COLOURS).index(track.colour) * len(SHAPES) + SHAPES.index(track.shape)
    return frame, labels


def track_position(track: ShapeTrack, settings: SyntheticSettings, time: float) -> tuple[float, float]:
    dx, dy = DIRECTIONS[track.direction]
    progress = min(max(time / max(settings.seconds - 1, 1), 0.0), 1.0) * settings.travel
    return track.start[0] + dx * progress, track.start[1] + dy * progress


def _start(direction: str, settings: SyntheticSettings, rng: random.Random) -> tuple[float, float]:
    margin = settings.object_size / 2 + 1
    low, high = margin, settings.size - margin
    dx, dy = DIRECTIONS[direction]

    def axis(d: int) -> float:
        if d > 0:
            return rng.uniform(low, high - settings.travel)
        if d < 0:
            return rng.uniform(low + settings.travel, high)
        return rng.uniform(low, high)

    return axis(dx), axis(dy)


def make_tracks(settings: SyntheticSettings, decks: dict, rng: random.Random) -> list[ShapeTrack]:
    two = rng.random() < settings.two_shape_share
    colour, shape, direction = decks["colour"].draw(), decks["shape"].draw(), decks["direction"].draw()
    tracks = [ShapeTrack(shape, colour, direction, _start(direction, settings, rng), 0.0)]
    if two:
        second_colour = decks["colour2"].draw(exclude={colour})
        second_shape = decks["shape2"].draw(exclude={shape})
        second_direction = decks["direction2"].draw()
        enters = rng.choice([1.5, 2.5, 3.5]) if settings.seconds > 4 else 1.5
        tracks.append(
            ShapeTrack(
                second_shape,
                second_colour,
                second_direction,
                _start(second_direction, settings, rng),
                enters,
                primary_rank=1,
            )
        )
        if rng.random() < 0.5:  # half the time the deck-drawn shape is the one that enters later
            tracks[0].enters, tracks[1].enters = tracks[1].enters, 0.0
    return tracks


def questions(tracks: list[ShapeTrack], rng: random.Random) -> list[dict]:
    """One question of each applicable type about the video's deck-drawn shape (its attributes are balanced);
    the order question is about whichever shape entered first."""
    target = min(tracks, key=lambda t: t.primary_rank)
    out = [
        {
            "type": "colour",
            "question": rng.choice(PHRASINGS["colour"]).format(shape=target.shape),
            "answer": target.colour,
        },
        {
            "type": "shape",
            "question": rng.choice(PHRASINGS["shape"]).format(colour=target.colour),
            "answer": target.shape,
        },
        {
            "type": "direction",
            "answer": target.direction,
            "question": rng.choice(PHRASINGS["direction"]).format(colour=target.colour, shape=target.shape),
        },
    ]
    if len(tracks) == 2:
        first = min(tracks, key=lambda t: t.enters)
        kind = rng.choice(("order_shape", "order_colour"))
        answer = first.shape if kind == "order_shape" else first.colour
        out.append({"type": "order", "question": rng.choice(PHRASINGS[kind]), "answer": answer})
    return out


def encode_video(path: Path, tracks: list[ShapeTrack], settings: SyntheticSettings) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=settings.encode_fps)
        stream.width = stream.height = settings.size
        stream.pix_fmt = "yuv420p"
        # lossless (qp 0): x264's lossy decisions vary from run to run now and then (even on one thread), which
        # made the same seed give slightly different pixels; lossless frames decode to exactly what was drawn
        stream.options = {"qp": "0", "preset": "veryfast", "g": str(settings.encode_fps * 2)}
        for step in range(settings.seconds * settings.encode_fps):
            frame, _ = render_frame(tracks, settings, step / settings.encode_fps)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(out: str | Path, settings: SyntheticSettings | None = None) -> dict:
    """Write the set (see the module docstring); returns the meta dict (counts, baselines)."""
    settings = settings or SyntheticSettings()
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(settings.seed)
    decks = {
        name: Deck(values, rng)
        for name, values in (
            ("colour", COLOURS),
            ("shape", SHAPES),
            ("direction", DIRECTIONS),
            ("colour2", COLOURS),
            ("shape2", SHAPES),
            ("direction2", DIRECTIONS),
        )
    }
    train, heldout, tracks_by_video = [], [], {}
    # Held-out = the first videos, a whole number of 12-video blocks where possible: the decks cycle every 3
    # or 4 draws, so every answer is equally common there too.
    heldout_count = min(-(-settings.heldout_videos // 12) * 12, settings.num_videos - 1)
    heldout_ids = set(range(heldout_count))
    for index in range(settings.num_videos):
        video_id = f"shapes-{settings.seed}-{index:05d}"
        tracks = make_tracks(settings, decks, rng)
        tracks_by_video[video_id] = [asdict(t) for t in tracks]
        encode_video(out / "videos" / f"{video_id}.mp4", tracks, settings)
        for number, qa in enumerate(questions(tracks, rng)):
            record = {
                "id": f"{video_id}-{number}",
                "video": f"{video_id}.mp4",
                "type": qa["type"],  # lets a recipe weigh the mix (data.repeat_by_type)
                "conversations": [
                    {"from": "human", "value": f"<image>\n{qa['question']}{ONE_WORD}"},
                    {"from": "gpt", "value": qa["answer"]},
                ],
            }
            if index in heldout_ids:
                heldout.append({**record, "answer": qa["answer"]})
            else:
                train.append(record)
    (out / "train.json").write_text(json.dumps(train, indent=1))
    (out / "heldout.json").write_text(json.dumps(heldout, indent=1))
    meta = {
        "settings": asdict(settings),
        "train_records": len(train),
        "heldout_records": len(heldout),
        "majority_baseline": majority_baseline(heldout),
        "tracks": tracks_by_video,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def fresh_heldout(out: str | Path, seed: int, questions: int = 300) -> list[dict]:
    """`questions` held-out records about videos generated now with `seed` (choose one that is not the training
    set's): for evaluating a trained model on videos it has never seen. Videos land in `<out>/videos`."""
    videos = -(-questions * 2 // 7) + 12  # about 3.5 questions a video, and a margin
    generate(out, SyntheticSettings(seed=seed, num_videos=videos + 1, heldout_videos=videos))
    return json.loads((Path(out) / "heldout.json").read_text())[:questions]


def majority_baseline(records: list[dict]) -> dict[str, float]:
    """Accuracy of always giving the most common answer, per question type and overall (per-type majority)."""
    by_type: dict[str, Counter] = {}
    for record in records:
        by_type.setdefault(record["type"], Counter())[record["answer"]] += 1
    out = {kind: counts.most_common(1)[0][1] / sum(counts.values()) for kind, counts in by_type.items()}
    total = sum(sum(c.values()) for c in by_type.values())
    out["overall"] = sum(c.most_common(1)[0][1] for c in by_type.values()) / max(total, 1)
    return out


__all__ = ["SyntheticSettings", "fresh_heldout", "generate", "majority_baseline", "render_frame"]
