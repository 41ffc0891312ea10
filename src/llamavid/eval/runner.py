"""Answer generation for a benchmark: batched, resumable, sharded.

* Batched: the questions of a batch go through the model together (left padding, the model's batched path);
  under greedy decoding the answers equal batch size 1. Vision features are computed per media item, so a batch
  never changes them.
* Resumable: answers are appended as JSON lines, flushed and fsync'ed after every batch; on start the file's
  complete lines tell which ids are done, and a partial last line (a kill mid-write) is cut off.
* Sharded: `num_shards` contiguous chunks of ceil(n / num_shards) questions, as the original's `--num-chunks`;
  each shard writes `<bench>.shard<I>of<N>.jsonl` plus a `.meta.json` listing the ids it owes, so `merge` can
  check that nothing is missing or duplicated. Under `accelerate launch` the rank and world size come from the
  environment.
* Video features are cached on disk, keyed by file content, sampling settings and the vision tower's weights
  (`llamavid.inference.features`), so another run on the same videos skips decoding and the vision tower.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .base import Benchmark, Item, Media, llava_row, row_key
from .data import EvalDataError


@dataclass
class RunSettings:
    """How `llamavid eval run` generates answers; each field is one of its flags."""

    batch_size: int = field(default=1, metadata={"help": "questions generated together"})
    limit: int | None = field(default=None, metadata={"help": "only the first N questions (a quick look)"})
    num_shards: int | None = field(
        default=None,
        metadata={"help": "split the questions into N contiguous shards (default: one a process under "
                          "accelerate launch or torchrun, from WORLD_SIZE)"},
    )
    shard_index: int | None = field(
        default=None, metadata={"help": "which shard this process answers, 0-based (default: RANK, else 0)"}
    )
    split: str | None = field(
        default=None, metadata={"help": "vqav2: test-dev|val; vizwiz: test|val; mmbench: tsv file stem"}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "answer length (default: the original's, 128 or 1024 for MMBench/SQA/video)"}
    )
    greedy: bool = field(default=False, metadata={"help": "greedy decoding for the video benchmarks too"})
    temperature: float | None = field(default=None, metadata={"help": "sampling temperature (default: the original's)"})
    seed: int = field(default=0, metadata={"help": "seed of sampled decoding"})
    feature_cache: Path | None = field(
        default=None, metadata={"help": "folder for cached video features (default OUT/features)"}
    )
    model_id: str | None = field(
        default=None, metadata={"help": "model_id written in the answers (default: the model folder's name)"}
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar", "flag": "--no-progress"})

    def __post_init__(self):
        if self.num_shards is None:  # accelerate launch / torchrun: one shard per process
            self.num_shards = int(os.environ.get("WORLD_SIZE", "1"))
            if self.shard_index is None:
                self.shard_index = int(os.environ.get("RANK", "0"))
        self.shard_index = self.shard_index or 0
        self.model_id = self.model_id or "llamavid"
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise UsageError(
                f"--shard-index {self.shard_index} must lie in [0, --num-shards {self.num_shards})"
            )
        if self.greedy and self.temperature:
            raise UsageError("--greedy and --temperature contradict each other; give one")


def decoding(bench: Benchmark, settings: RunSettings) -> dict:
    temperature = bench.generation.temperature if settings.temperature is None else settings.temperature
    if settings.greedy:
        temperature = 0.0
    return {
        "max_new_tokens": settings.max_new_tokens or bench.generation.max_new_tokens,
        "temperature": temperature,
        "mode": "greedy" if temperature == 0 else f"sample(temperature={temperature})",
    }


def shard(items: list, num_shards: int, index: int) -> list:
    size = math.ceil(len(items) / num_shards) if items else 0
    return items[index * size : (index + 1) * size]


def answers_path(out: Path, bench: str, num_shards: int = 1, index: int = 0) -> Path:
    name = f"{bench}.jsonl" if num_shards == 1 else f"{bench}.shard{index}of{num_shards}.jsonl"
    return Path(out) / name


def meta_path(answers: Path) -> Path:
    return answers.with_name(answers.name[: -len(".jsonl")] + ".meta.json")


def recover(path: Path) -> list[dict]:
    """The complete rows of an answers file; a partial last line is truncated away."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    rows = []
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise EvalDataError(
                    f"{path}:{number} is not a JSON line; remove the file to start over"
                ) from None
    return rows


class AnswerGenerator:
    """Model + processor -> answers for batches of items, through the engine's media encoder, prompt builder and
    generator. Knows nothing about benchmarks."""

    def __init__(self, model, processor, feature_cache_dir: Path | None = None):
        from llamavid.inference.engine import ChatEngine

        self.model = model
        self.processor = processor
        self.engine = ChatEngine.for_evaluation(model, processor, feature_cache_dir, memory_items=4)

    def features(self, media: Media):
        """The vision features of an item's medium (an image padded as the benchmark says)."""
        from llamavid.media import MediaError, base64_bytes

        encoder = self.engine.encoder
        source = media.source
        if media.kind == "video" and not Path(source).is_file():
            raise EvalDataError(f"missing video {source}")
        try:
            if media.base64:
                source = base64_bytes(source)
            return encoder.encode(source, media.kind, encoder.with_sampling(pad=media.pad))
        except MediaError as error:
            raise EvalDataError(str(error)) from None

    def answer(self, items: list[Item], max_new_tokens: int, temperature: float, seed: int | None = None) -> list[list[str]]:
        """Each item's answers (one per request), generated as one batch; the Q-Former sees each request's own
        prompt, as in the original's scripts."""
        from llamavid.inference.generation import GenerationSettings
        from llamavid.inference.inputs import Turn, build_sample
        from llamavid.model.chat_templates import IMAGE_PLACEHOLDER

        samples = []
        for item in items:
            media = [self.features(item.media)] if item.media is not None else []
            for request in item.requests:
                # the builder puts the placeholder line back in front; the text after it stays as the script had it
                text = request.prompt.removeprefix(IMAGE_PLACEHOLDER + "\n") if media else request.prompt
                turn = Turn("user", text, media, qformer_prompt=request.qformer if media else None)
                samples.append(build_sample(self.processor, [turn]))
        # top_k 50: the original's scripts sample with transformers' default top-k
        settings = GenerationSettings(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, top_k=50)
        texts = [clean_output(text) for text in self.engine.answer_batch(samples, settings)]
        answers, cursor = [], 0
        for item in items:
            answers.append(texts[cursor : cursor + len(item.requests)])
            cursor += len(item.requests)
        return answers


def clean_output(text: str) -> str:
    """The original's post-processing: strip, drop a trailing "</s>", strip."""
    text = text.strip()
    if text.endswith("</s>"):
        text = text[: -len("</s>")]
    return text.strip()


def run_benchmark(
    bench: Benchmark,
    generator: AnswerGenerator,
    data: Path,
    out: Path,
    settings: RunSettings,
    items: list | None = None,
) -> Path:
    """Generate the missing answers of this shard into its answers file; returns the file.

    `items`: the benchmark's questions when already loaded (the CLI checks the data before loading the model)."""
    items = bench.load(Path(data), settings.split) if items is None else items
    if settings.limit is not None:
        items = items[: settings.limit]
    items = shard(items, settings.num_shards, settings.shard_index)
    path = answers_path(out, bench.name, settings.num_shards, settings.shard_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    decode = decoding(bench, settings)
    meta = {
        "benchmark": bench.name,
        "split": settings.split,
        "limit": settings.limit,
        "num_shards": settings.num_shards,
        "shard_index": settings.shard_index,
        "model_id": settings.model_id,
        "decoding": decode,
        "ids": [item.key for item in items],
    }
    _check_meta(path, meta)
    done = {row_key(row) for row in recover(path)}
    todo = [item for item in items if item.key not in done]
    bar = None
    if settings.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(items), initial=len(items) - len(todo), desc=bench.name, unit="q", dynamic_ncols=True
        )
    make_row = bench.make_row or llava_row
    with open(path, "a", encoding="utf-8") as handle:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            seed = settings.seed + start if decode["temperature"] > 0 else None
            texts = generator.answer(batch, decode["max_new_tokens"], decode["temperature"], seed)
            lines = "".join(
                json.dumps(_row(make_row, item, answer, settings.model_id)) + "\n"
                for item, answer in zip(batch, texts, strict=True)
            )
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    return path


def _row(make_row, item: Item, texts: list[str], model_id: str) -> dict:
    row = make_row(item, texts, model_id)
    if item.uid is not None:
        row["uid"] = item.uid
    return row


def _check_meta(path: Path, meta: dict) -> None:
    """A resumed run must ask the same questions with the same decoding; record the plan on the first run."""
    target = meta_path(path)
    if target.is_file() and path.exists():
        previous = json.loads(target.read_text(encoding="utf-8"))
        for key in ("benchmark", "split", "decoding", "model_id", "num_shards", "shard_index", "limit"):
            if previous.get(key) != meta[key]:
                raise EvalDataError(
                    f"{path} was written with {key}={previous.get(key)!r}, this run has {meta[key]!r}; "
                    "use another --out or delete the file"
                )
    from .data import write_json

    write_json(target, meta)


def merge_shards(out: Path, bench: str) -> tuple[Path, int]:
    """Concatenate the shards in order into `<bench>.jsonl`, checking every owed id appears exactly once."""
    out = Path(out)
    metas = sorted(out.glob(f"{bench}.shard*of*.meta.json"))
    if not metas:
        raise EvalDataError(f"no shard files {bench}.shard<I>of<N>.jsonl in {out}")
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in metas]
    counts = {meta["num_shards"] for meta in loaded}
    if len(counts) != 1:
        raise EvalDataError(f"shards in {out} come from runs with different --num-shards: {sorted(counts)}")
    total = counts.pop()
    by_index = {meta["shard_index"]: meta for meta in loaded}
    absent = [i for i in range(total) if i not in by_index]
    if absent:
        raise EvalDataError(f"shard(s) {absent} of {total} are missing in {out}")
    rows, seen = [], set()
    for index in range(total):
        path = answers_path(out, bench, total, index)
        owed = by_index[index]["ids"]
        got = recover(path)
        got_ids = [row_key(row) for row in got]
        duplicated = {qid for qid, n in Counter(got_ids).items() if n > 1} | (set(got_ids) & seen)
        if duplicated:
            raise EvalDataError(f"{path}: question ids answered twice: {sorted(duplicated)[:5]}")
        lacking = [qid for qid in owed if qid not in set(got_ids)]
        if lacking:
            raise EvalDataError(
                f"{path} lacks {len(lacking)} answers (e.g. {lacking[:5]}); rerun that shard to finish it"
            )
        extra = set(got_ids) - set(owed)
        if extra:
            raise EvalDataError(f"{path} has answers for ids it does not own: {sorted(extra)[:5]}")
        seen.update(got_ids)
        rows.extend(got)
    from .data import write_jsonl

    return write_jsonl(answers_path(out, bench), rows), len(rows)
