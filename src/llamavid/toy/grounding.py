"""Stage 0, second part: pretrain the tiny Q-Former to look where a prompt points.

The released models start from InstructBLIP's Q-Former, pretrained to relate text to image regions; its
queries already follow the words of a prompt. LLaMA-VID's context token is built on that: the text-aware
queries attend over the frame's patches, and the attended features become the token. A random tiny Q-Former
attends uniformly, so its context token is just another mean of the frame, and a two-object video cannot be
told apart ("the red one" or "the circle"?) until the LLM's answer loss, much later, teaches it to look.

So, after the vision tower, stage 0 trains the Q-Former, its queries and the query/key projectors on
grounding: a prompt that names one object of a frame (by colour, shape or both, in the phrasings questions
use) and the patches of that object, from the same dense labels as the tower; a quarter of the prompts name an
object the frame does not show, and their target is the background. Prompts that name no object (the order
questions: "Which shape appeared first?") target every object in the frame, as a generic question draws
InstructBLIP's queries to the salient things: the context token of each frame then holds its objects, not the
background that dominates the frame's mean. The loss is the negative log of the attention mass every query
puts on those patches. No answer is used: the prompt names the object the
question is *about*, never what is asked. Later stages train these weights further (stage 2) or keep them
frozen (stage 1), as the releases do with InstructBLIP's.
"""

from __future__ import annotations

import logging
import math
import random

import torch

from .synthetic import COLOURS, ONE_WORD, PHRASINGS, SHAPES

logger = logging.getLogger(__name__)
GROUNDING_PREFIXES = (
    "token_generator.qformer.",
    "token_generator.query_tokens",
    "token_generator.query_projector.",
    "token_generator.key_projector.",
    "token_generator.vision_layernorm.",
)


def referring_prompts(kinds: tuple[str, ...] = ("colour", "shape", "direction")) -> dict[int, list[str]]:
    """Every prompt that names the object of a patch class (1 + colour * 3 + shape), as the questions of `kinds`
    name it."""
    prompts: dict[int, list[str]] = {}
    for c, colour in enumerate(COLOURS):
        for s, shape in enumerate(SHAPES):
            prompts[1 + c * len(SHAPES) + s] = [
                phrasing.format(colour=colour, shape=shape) + ONE_WORD for kind in kinds for phrasing in PHRASINGS[kind]
            ]
    return prompts


def unnamed_prompts() -> list[str]:
    """Prompts that name no object (the order questions' phrasings): their target is every object."""
    return [phrasing + ONE_WORD for kind in ("order_shape", "order_colour") for phrasing in PHRASINGS[kind]]


def grounding_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From a frame's patch labels (F, N): (frame, class) of every object visible in it (K, 2), and of every
    object that shares neither colour nor shape with a visible one (absent, so the prompt names nothing there:
    a video's second object before it enters)."""
    present = torch.zeros(labels.shape[0], 1 + len(COLOURS) * len(SHAPES), dtype=torch.bool)
    present.scatter_(1, labels, True)
    present[:, 0] = False
    grid = present[:, 1:].unflatten(1, (len(COLOURS), len(SHAPES)))  # (F, colours, shapes)
    colour_seen, shape_seen = grid.any(dim=2), grid.any(dim=1)
    absent = ~(colour_seen[:, :, None] | shape_seen[:, None, :])
    absent = torch.cat([torch.zeros_like(present[:, :1]), absent.flatten(1)], dim=1)
    return present.nonzero(), absent.nonzero()


class GroundingData:
    """Frames' features and labels with every referring prompt tokenized once."""

    def __init__(
        self, features: torch.Tensor, labels: torch.Tensor, qformer_tokenizer, max_length: int,
        absent_share: float = 0.25, unnamed_share: float = 0.0,
    ):
        """`absent_share` of the referring pairs name an absent object; `unnamed_share` of all pairs are frames
        with a prompt that names none (class 0 in `pairs`)."""
        self.features, self.labels = features, labels
        present, absent = grounding_pairs(labels)
        shuffle = torch.Generator().manual_seed(0)
        count = min(len(absent), round(len(present) * absent_share / (1 - absent_share)))
        absent = absent[torch.randperm(len(absent), generator=shuffle)[:count]]
        with_objects = (labels != 0).any(dim=1).nonzero().squeeze(1)
        unnamed_count = min(len(with_objects), round((len(present) + count) * unnamed_share / (1 - unnamed_share)))
        chosen = with_objects[torch.randperm(len(with_objects), generator=shuffle)[:unnamed_count]]
        unnamed = torch.stack([chosen, torch.zeros_like(chosen)], dim=1)
        self.pairs = torch.cat([present, absent, unnamed])
        self.is_present = torch.cat(
            [torch.ones(len(present), dtype=torch.bool), torch.zeros(count + unnamed_count, dtype=torch.bool)]
        )
        prompts = {0: unnamed_prompts(), **referring_prompts()}
        self.choices = {c: len(texts) for c, texts in prompts.items()}
        texts = [t for c in sorted(prompts) for t in prompts[c]]
        self.offsets = {}
        start = 0
        for c in sorted(prompts):
            self.offsets[c] = start
            start += len(prompts[c])
        encoded = qformer_tokenizer(
            texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )
        self.input_ids, self.attention_mask = encoded["input_ids"], encoded["attention_mask"]

    def batch(self, indices: torch.Tensor, rng: random.Random):
        frames, classes = self.pairs[indices].unbind(1)
        prompt = torch.tensor(
            [self.offsets[int(c)] + rng.randrange(self.choices[int(c)]) for c in classes], dtype=torch.long
        )
        # The named object's patches; for an absent object, the background (attend to nothing in particular);
        # for a prompt naming none (class 0), every object.
        named = torch.where(self.is_present[indices], classes, torch.zeros_like(classes))
        labels = self.labels[frames]
        target = torch.where((classes == 0)[:, None], labels != 0, labels == named[:, None])  # (B, N)
        return self.features[frames], self.input_ids[prompt], self.attention_mask[prompt], target


def grounding_loss(generator, features, input_ids, attention_mask, target, include_cls: bool = True):
    """(loss, mean attention mass on the target patches) for a batch of (frame, prompt, target mask) rows."""
    patches = features[:, 1:] if include_cls else features
    weights = generator.context_attention(
        features, generator.key_projector(patches), input_ids, attention_mask
    )  # (B, Q, N)
    mass = (weights * target[:, None, :]).sum(-1)  # (B, Q)
    return -(mass + 1e-6).log().mean(), mass.mean()


def pretrain_grounding(
    model, qformer_tokenizer, train: dict, heldout: dict | None, steps: int, batch_size: int,
    learning_rate: float, warmup_steps: int, seed: int, unnamed_share: float = 0.0,
) -> dict:
    """Train the grounding parameters (GROUNDING_PREFIXES) in place; `train`/`heldout` hold the frozen tower's
    `features` (F, 1 + N, V) and patch `labels` (F, N). Returns the attention mass on the named object."""
    generator = model.token_generator
    parameters = [p for n, p in model.named_parameters() if n.startswith(GROUNDING_PREFIXES)]
    for parameter in parameters:
        parameter.requires_grad_(True)
    generator.train()
    max_length = model.config.qformer_max_length
    data = GroundingData(train["features"], train["labels"], qformer_tokenizer, max_length, unnamed_share=unnamed_share)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    rng = random.Random(seed)
    torch_rng = torch.Generator().manual_seed(seed)
    log = []
    for step in range(steps):
        scale = (step + 1) / warmup_steps if step < warmup_steps else 0.5 * (
            1 + math.cos(math.pi * (step - warmup_steps) / max(1, steps - warmup_steps))
        )
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * scale
        indices = torch.randint(0, len(data.pairs), (batch_size,), generator=torch_rng)
        loss, mass = grounding_loss(generator, *data.batch(indices, rng))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            log.append({"step": step, "grounding_loss": round(loss.item(), 4), "mass": round(mass.item(), 4)})
            logger.info("stage0 grounding step %d: %s", step, log[-1])
    generator.eval()
    figures = {"grounding_mass": _mass(generator, data, seed), "grounding_log": log}
    if heldout is not None:
        figures["heldout_grounding_mass"] = _mass(
            generator, GroundingData(heldout["features"], heldout["labels"], qformer_tokenizer, max_length), seed
        )
        figures["heldout_grounding_by_naming"] = _mass_by_naming(
            generator, heldout["features"], heldout["labels"], qformer_tokenizer, max_length, seed
        )
        figures["heldout_grounding_unnamed"] = _mass_unnamed(
            generator, heldout["features"], heldout["labels"], qformer_tokenizer, max_length, seed
        )
    for parameter in parameters:
        parameter.requires_grad_(False)
    return figures


@torch.no_grad()
def _mass(generator, data: GroundingData, seed: int, count: int = 512) -> float:
    """Mean attention mass on the named object's patches (uniform attention gives its share of the frame)."""
    indices = torch.randperm(len(data.pairs), generator=torch.Generator().manual_seed(seed))[:count]
    return grounding_loss(generator, *data.batch(indices, random.Random(seed)))[1].item()


# Which words of a prompt name the object: colour questions name its shape, shape questions its colour.
NAMING_PHRASINGS = {"shape": "colour", "colour": "shape", "both": "direction"}


@torch.no_grad()
def _mass_by_naming(generator, features, labels, qformer_tokenizer, max_length: int, seed: int, count: int = 512):
    """Attention mass on the named object in frames showing two objects (where the name must pick one), per way
    of naming it. An even split between the two (about 0.5) means that way of naming is not followed; a mean
    over all frames hides this, since one-object frames are easy whatever the prompt says."""
    present, _ = grounding_pairs(labels)
    objects = (labels.unsqueeze(-1) == torch.arange(1, 1 + len(COLOURS) * len(SHAPES))).any(1).sum(1)
    pairs = present[objects[present[:, 0]] >= 2]
    if len(pairs) == 0:
        return {}
    pairs = pairs[torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:count]]
    rng = random.Random(seed)
    figures = {}
    for naming, kind in NAMING_PHRASINGS.items():
        prompts = referring_prompts((kind,))
        texts = [rng.choice(prompts[c]) for c in pairs[:, 1].tolist()]
        target = labels[pairs[:, 0]] == pairs[:, 1:2]
        figures[naming] = _mass_of_texts(generator, features[pairs[:, 0]], texts, target, qformer_tokenizer, max_length)
    return figures


def _mass_of_texts(generator, features, texts: list[str], target, qformer_tokenizer, max_length: int) -> float:
    """Mean attention mass on `target` patches (B, N) of frames `features` for prompts `texts`, rounded."""
    encoded = qformer_tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    _, mass = grounding_loss(generator, features, encoded["input_ids"], encoded["attention_mask"], target)
    return round(mass.item(), 4)


@torch.no_grad()
def _mass_unnamed(generator, features, labels, qformer_tokenizer, max_length: int, seed: int, count: int = 512):
    """Attention mass on all the objects of a frame for prompts that name none (order questions); the objects
    cover a few percent of a frame, so uniform attention gives about that."""
    frames = (labels != 0).any(dim=1).nonzero().squeeze(1)
    frames = frames[torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:count]]
    if len(frames) == 0:
        return None
    rng = random.Random(seed)
    texts = [rng.choice(unnamed_prompts()) for _ in range(len(frames))]
    return _mass_of_texts(generator, features[frames], texts, labels[frames] != 0, qformer_tokenizer, max_length)


__all__ = ["GROUNDING_PREFIXES", "grounding_pairs", "pretrain_grounding", "referring_prompts", "unnamed_prompts"]
