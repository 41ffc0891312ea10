"""The released LLaMA-VID checkpoints and the files each one needs besides its own repository.

A released model folder is not enough to run it: the original loads the vision tower from LAVIS's
`eva_vit_g.pth`, the image processor from a CLIP configuration folder, the Q-Former tokenizer from BERT's
vocabulary and, for checkpoints without Q-Former weights, InstructBLIP's Q-Former file. This table says where
each of those lives, so that a model name is all a user has to give.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from ..model.convert import ArchitectureHints

LAVIS_ENDPOINT = "https://storage.googleapis.com/sfr-vision-language-research"
"""Where the original README links LAVIS's weights; `LLAMAVID_LAVIS_ENDPOINT` points elsewhere (a mirror)."""


@dataclass(frozen=True)
class RemoteFile:
    """A weights file outside the Hugging Face hub, checked after download: against `sha256` when it is pinned
    (here or by the user), else against the hash the server publishes for it.

    `path` is where it goes under the download folder; a file of LAVIS's bucket is fetched from there under the
    endpoint, a file the user named by URL (`source_url`, see `from_url`) from that URL."""

    name: str
    path: str
    sha256: str | None = None
    source_url: str | None = None

    @property
    def url(self) -> str:
        if self.source_url is not None:
            return self.source_url
        endpoint = os.environ.get("LLAMAVID_LAVIS_ENDPOINT", LAVIS_ENDPOINT).rstrip("/")
        return f"{endpoint}/{self.path}"

    @classmethod
    def from_url(cls, name: str, url: str, sha256: str | None = None) -> RemoteFile:
        """A file the user gave by URL. Its download name is made, never taken from the URL: `urls/<key>-<last
        path segment reduced to letters, digits, '.', '_' and '-'>`, so `..`, slashes (encoded or not) and
        hidden names cannot leave the download folder; the key (a hash of the URL and the pinned checksum) keeps
        two URLs ending in the same name, or one URL pinned to another checksum, apart."""
        segment = unquote(urlsplit(url).path).replace("\\", "/").rsplit("/", 1)[-1]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", segment).lstrip(".") or "download"
        key = hashlib.sha256(f"{url}\n{sha256 or ''}".encode()).hexdigest()[:16]
        return cls(name, f"urls/{key}-{safe[:100]}", sha256, url)


EVA_VIT_G = RemoteFile("EVA-ViT-G (eva_vit_g.pth)", "LAVIS/models/BLIP2/eva_vit_g.pth")
INSTRUCTBLIP = {
    "7b": RemoteFile(
        "InstructBLIP Q-Former (instruct_blip_vicuna7b_trimmed.pth)",
        "LAVIS/models/InstructBLIP/instruct_blip_vicuna7b_trimmed.pth",
    ),
    "13b": RemoteFile(
        "InstructBLIP Q-Former (instruct_blip_vicuna13b_trimmed.pth)",
        "LAVIS/models/InstructBLIP/instruct_blip_vicuna13b_trimmed.pth",
    ),
}
# The original's llamavid/processor/clip-patch14-{224,336} folders are these repositories' processor configs.
CLIP_PROCESSORS = {224: "openai/clip-vit-large-patch14", 336: "openai/clip-vit-large-patch14-336"}
BERT_VOCAB_REPO = "google-bert/bert-base-uncased"
BERT_VOCAB_FILE = "vocab.txt"
LLM_SIZES = {4096: "7b", 5120: "13b"}
"""LLM width -> the InstructBLIP file trained against that Vicuna, for checkpoints not in the table."""


@dataclass(frozen=True)
class Release:
    repo_id: str
    use: Literal["image", "short video", "long video"]
    llm: Literal["7b", "13b"]
    image_size: Literal[224, 336]
    tokens: str
    """What one visual costs in LLM tokens, as a person reads it."""
    stage: Literal["full", "pretrain"] = "full"
    """`pretrain` folders hold only the stage-1 adapter (`mm_projector.bin`): a start for training, not a chat."""
    template: str = "vicuna_v1"
    hints: ArchitectureHints | None = None
    """Sizes the weights cannot tell; the released models use the defaults (EVA-ViT-G, BERT-base)."""

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]

    @property
    def processor_repo(self) -> str:
        return CLIP_PROCESSORS[self.image_size]

    @property
    def instructblip(self) -> RemoteFile:
        """The Q-Former file its stage 1 started from; fetched only if the checkpoint lacks Q-Former weights."""
        return INSTRUCTBLIP[self.llm]

    def parts(self) -> dict[str, str]:
        """Every file the conversion needs besides the model repository, by `llamavid convert` option."""
        return {
            "--processor": self.processor_repo,
            "--qformer-vocab": f"{BERT_VOCAB_REPO}/{BERT_VOCAB_FILE}",
            "--eva": EVA_VIT_G.url,
            "--instructblip": f"{self.instructblip.url} (only if the checkpoint lacks Q-Former weights)",
        }


def _releases(*releases: Release) -> dict[str, Release]:
    return {release.repo_id: release for release in releases}


IMAGE_224 = "257 per image (1 context + 256 content)"
IMAGE_336 = "577 per image (1 context + 576 content)"
PER_FRAME = "2 per frame or image"
RELEASES = _releases(
    Release("YanweiLi/llama-vid-7b-full-224", "image", "7b", 224, IMAGE_224),
    Release("YanweiLi/llama-vid-7b-full-336", "image", "7b", 336, IMAGE_336),
    Release("YanweiLi/llama-vid-13b-full-336", "image", "13b", 336, IMAGE_336),
    Release("YanweiLi/llama-vid-7b-full-224-video-fps-1", "short video", "7b", 224, PER_FRAME),
    Release("YanweiLi/llama-vid-13b-full-224-video-fps-1", "short video", "13b", 224, PER_FRAME),
    Release("YanweiLi/llama-vid-7b-full-224-long-video", "long video", "7b", 224, PER_FRAME),
    Release("YanweiLi/llama-vid-7b-pretrain-224", "image", "7b", 224, IMAGE_224, stage="pretrain"),
    Release("YanweiLi/llama-vid-7b-pretrain-336", "image", "7b", 336, IMAGE_336, stage="pretrain"),
    Release("YanweiLi/llama-vid-13b-pretrain-336", "image", "13b", 336, IMAGE_336, stage="pretrain"),
    Release("YanweiLi/llama-vid-7b-pretrain-224-video-fps-1", "short video", "7b", 224, PER_FRAME, stage="pretrain"),
    Release("YanweiLi/llama-vid-13b-pretrain-224-video-fps-1", "short video", "13b", 224, PER_FRAME, stage="pretrain"),
)


def image_size_of(original_config: dict) -> int | None:
    """224 or 336, from the processor folder a released config names (`./llamavid/processor/clip-patch14-336`)."""
    processor = str(original_config.get("image_processor") or "").rstrip("/")
    for size in CLIP_PROCESSORS:
        if processor.endswith(f"-{size}"):
            return size
    return None


def chat_command(release: Release) -> str:
    media = {"image": "--image photo.jpg", "short video": "--video clip.mp4", "long video": "--features movie.safetensors"}
    return f"llamavid chat --model {release.repo_id} {media[release.use]}"


def markdown_table() -> str:
    """The README's table of released checkpoints (a test keeps the README equal to it)."""
    rows = [
        "| checkpoint | for | LLM | image size | tokens | template | chat with it |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for release in RELEASES.values():
        if release.stage == "full":
            command = f"`{chat_command(release)}`"
        else:
            command = "stage-1 adapter only: a start for `llamavid train`, not a chat model"
        rows.append(
            f"| `{release.repo_id}` | {release.use} | Vicuna-{release.llm.upper()} | {release.image_size} "
            f"| {release.tokens} | `{release.template}` | {command} |"
        )
    return "\n".join(rows)


__all__ = [
    "BERT_VOCAB_FILE",
    "BERT_VOCAB_REPO",
    "CLIP_PROCESSORS",
    "EVA_VIT_G",
    "INSTRUCTBLIP",
    "LLM_SIZES",
    "RELEASES",
    "Release",
    "RemoteFile",
    "chat_command",
    "image_size_of",
    "markdown_table",
]
