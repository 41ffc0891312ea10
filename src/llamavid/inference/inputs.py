"""A conversation with encoded media -> model inputs: the one place the prompt layout is decided.

Chat, the server and its web page, the evaluator and training's held-out evaluation all build their prompts
here (`build_sample`), and batch them with `collate`. Layouts, as the released models were trained:

* a user turn's media come first, one placeholder line each, in the order the message gave them, then its text;
  each placeholder's Q-Former prompt is that turn's text (or the turn's own `qformer_prompt`, which the
  benchmarks give as the original's scripts did);
* a later user turn without media of its own shows again the media of the latest turn that had some, with its
  own question as the Q-Former prompt (the released models were trained with the medium in every turn);
* a movie (a feature file) uses the released long-video layout instead: one user turn with the start prompt,
  every frame's placeholder followed by its subtitle lines, the end prompt and the question, which is the
  Q-Former prompt of every frame; every frame is a segment of its own, and the features lose their CLS token as
  in the original. Later turns are plain text: the movie is shown once;
* a system text, when given, replaces the template's.

One length check (`check_length`) refuses a prompt that leaves no room to answer and says how many frames fit.
A `Sample` stays unpadded, so any samples with the same `batch_key` can be padded into one batch by `collate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..errors import LlamaVidError
from ..model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template

MOVIE_START = "Below is a movie. Memorize the content and answer my question after watching this movie."
MOVIE_END = "Now the movie end."
ANSWER_ROOM = 64  # tokens left for the answer when saying how many frames would fit


class ContextLengthError(LlamaVidError, ValueError):
    """Prompt plus visual tokens do not fit the model's context. `length` and `limit` in tokens; `fit`: the frames a
    placeholder could show so that it fits (None without frames); `detail`: how the frames' share was counted."""

    def __init__(self, message: str, length: int = 0, limit: int = 0, fit: int | None = None, detail: str = ""):
        super().__init__(message)
        self.length, self.limit, self.fit, self.detail = length, limit, fit, detail


class LayoutError(LlamaVidError, ValueError):
    """Media that cannot be shown together, or a conversation that cannot be laid out."""


@dataclass
class Turn:
    """One message: its role, its text, the media it shows (in order) and, when it differs from the text, the
    Q-Former prompt of its placeholders."""

    role: str
    text: str
    media: list = field(default_factory=list)
    qformer_prompt: str | None = None


@dataclass
class Sample:
    """One conversation's inputs before batching.

    `blocks` hold the features of the media shown; the model's visual items lie over them in order, `item_frames`
    frames each (a medium is one item; a movie is one item a frame). Each placeholder segment shows one item with
    its own Q-Former prompt."""

    ids: list[int]
    blocks: list[torch.Tensor] = field(default_factory=list)  # (frames, tokens, width) each
    item_frames: list[int] = field(default_factory=list)
    include_cls: bool = True
    segments: list[int] = field(default_factory=list)  # per segment: index of the item it shows
    prompts: list[str] = field(default_factory=list)  # per segment: its Q-Former prompt
    stop: list[str] = field(default_factory=list)  # the template's end-of-turn text
    media: list = field(default_factory=list)  # the distinct MediaFeatures shown, in first-use order

    @property
    def batch_key(self) -> tuple:
        """Samples with equal keys can share one `generate`: their features concatenate and agree on CLS."""
        if not self.blocks:
            return ()
        return (self.include_cls, tuple(self.blocks[0].shape[1:]))


def strip_placeholders(text: str) -> str:
    """A message's text without visual placeholders (a user who types `<image>` gets no phantom medium); the
    placeholder moves to the front as in the original, so the text around it is stripped."""
    cleaned = text.replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, "")
    return cleaned.strip() if cleaned != text else text


def build_sample(
    processor, turns: list[Turn], system: str | None = None, template: str | None = None, answer_prefix: str = ""
) -> Sample:
    """Turns whose media are `MediaFeatures` -> a Sample; `ContextLengthError` when it cannot fit.
    `answer_prefix` is text the assistant's answer starts with (what a log-likelihood is measured over)."""
    config = processor.config
    chat_template = get_template(template or config.chat_template)
    if system is not None:
        chat_template = dataclasses.replace(chat_template, system=system)
    if not turns or turns[-1].role != "user":
        raise LayoutError("The conversation must end with a user message")
    movies = [m for turn in turns for m in turn.media if m.kind == "movie"]
    if movies:
        return _movie_sample(processor, turns, chat_template, movies)
    sample = Sample(ids=[], stop=[chat_template.stop_string] if chat_template.stop_string else [])
    slots: dict[int, int] = {}  # id(MediaFeatures) -> its item
    rendered, showings, shown = [], [], []
    for turn in turns:
        text = strip_placeholders(turn.text)
        if turn.role != "user":
            rendered.append((turn.role, text))
            continue
        shown = list(turn.media) or shown
        lines = []
        for media in shown:
            if id(media) not in slots:
                slots[id(media)] = len(sample.media)
                sample.blocks.append(media.features)
                sample.item_frames.append(media.num_frames)
                sample.media.append(media)
            sample.segments.append(slots[id(media)])
            sample.prompts.append(text if turn.qformer_prompt is None else turn.qformer_prompt)
            showings.append(media.num_frames)
            lines.append(VIDEO_PLACEHOLDER if media.is_video else IMAGE_PLACEHOLDER)
        rendered.append(("user", "\n".join([*lines, text]) if lines else text))
    if len({m.include_cls for m in sample.media}) > 1:
        raise LayoutError("feature files and decoded media cannot be mixed in one conversation")
    sample.include_cls = all(m.include_cls for m in sample.media)
    sample.ids = processor.tokenize(chat_template.render(rendered) + answer_prefix, showings)
    check_length(len(sample.ids), config.context_length, sum(showings) * config.tokens_per_frame, showings)
    return sample


def movie_frames_text(subtitles: list[list[str]]) -> str:
    """Each frame's placeholder followed by its subtitle lines, no separators: the original's movie inputs."""
    return "".join(IMAGE_PLACEHOLDER + " ".join(lines) for lines in subtitles)


def movie_text(subtitles: list[list[str]], question: str) -> str:
    """The long-video user message: start prompt, the frames with their subtitles, end prompt, question (as the
    original's movie script)."""
    return f"{MOVIE_START}{movie_frames_text(subtitles)}{MOVIE_END}\n{question}"


def _movie_sample(processor, turns: list[Turn], chat_template, movies: list) -> Sample:
    movie = movies[0]
    first = turns[0]
    if len(movies) > 1 or first.role != "user" or len(first.media) != 1 or first.media[0] is not movie:
        raise LayoutError(
            "A movie cannot be mixed with other media: a movie conversation shows one movie, in its first "
            "message, which is the user's"
        )
    question = strip_placeholders(first.text).strip()
    rendered = [(t.role, strip_placeholders(t.text)) for t in turns]
    rendered[0] = ("user", movie_text(movie.subtitles, question))
    ids = processor.tokenize(chat_template.render(rendered), [1] * movie.num_frames)
    limit = processor.config.context_length
    if len(ids) >= limit:  # the frames' share of the prompt: placeholders and subtitles
        rendered[0] = ("user", movie_text([], question))
        frame_tokens = len(ids) - len(processor.tokenize(chat_template.render(rendered), []))
        check_length(len(ids), limit, frame_tokens, [movie.num_frames])
    features = movie.features[:, 1:] if movie.include_cls else movie.features  # (F, N, V): the original drops CLS
    return Sample(
        ids=ids,
        blocks=[features],
        item_frames=[1] * movie.num_frames,
        include_cls=False,
        segments=list(range(movie.num_frames)),
        prompts=[question] * movie.num_frames,
        stop=[chat_template.stop_string] if chat_template.stop_string else [],
        media=[movie],
    )


def check_length(length: int, limit: int, frame_tokens: int, showings: list[int]) -> None:
    """Refuse a prompt of `length` tokens that leaves no room to answer in `limit`, and say how many frames
    would fit. `frame_tokens` of the prompt come with the frames (their visual tokens, a movie's subtitles);
    `showings` gives the frames of each placeholder group (a medium shown once per user turn, a movie once)."""
    if length < limit:
        return
    message = f"This model's maximum context length is {limit} tokens, but the prompt needs {length}"
    frames = sum(showings)
    fit, detail = None, ""
    if frames:
        per_frame = frame_tokens / frames
        fit = max(0, int((limit - (length - frame_tokens) - ANSWER_ROOM) // (per_frame * len(showings))))
        detail = (f" ({frame_tokens} of them with the frames: {frames} frames x {round(per_frame, 1):g} tokens over "
                  f"{len(showings)} placeholder(s))")
        message += (
            f"{detail}; use at most {fit} frames (--max-frames {fit}, or max_frames in a "
            "request), fewer media or a shorter conversation"
        )
    raise ContextLengthError(message, length, limit, fit, detail)


def collate(processor, samples: list[Sample], device=None) -> dict:
    """Left-padded model inputs for samples sharing a `batch_key`; placeholders fill in reading order.

    Vision features move to `device` but keep their stored dtype (a movie's float16): the model casts them to its
    weights' dtype one chunk of frames at a time, so no second whole copy lives through `generate`."""
    blocks, counts, segment_index, prompts = [], [], [], []
    for sample in samples:
        offset = len(counts)
        blocks += sample.blocks
        counts += sample.item_frames
        segment_index += [offset + s for s in sample.segments]
        prompts += sample.prompts
    inputs = processor.pad([sample.ids for sample in samples], "left")
    if blocks:
        features = blocks[0] if len(blocks) == 1 else torch.cat(blocks)  # (F, T, V); a movie is not copied
        inputs["vision_features"] = features.to(device=device)
        inputs["vision_features_include_cls"] = samples[0].include_cls
        inputs["media_frame_counts"] = torch.tensor(counts, dtype=torch.long)
        inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = processor.tokenize_qformer(prompts)
        inputs["segment_media_index"] = torch.tensor(segment_index, dtype=torch.long)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


__all__ = [
    "ANSWER_ROOM",
    "ContextLengthError",
    "LayoutError",
    "MOVIE_END",
    "MOVIE_START",
    "Sample",
    "Turn",
    "build_sample",
    "check_length",
    "collate",
    "movie_frames_text",
    "movie_text",
    "strip_placeholders",
]
