"""A model name to a llamavid folder: released checkpoints downloaded with huggingface_hub and converted once.

`resolve_model(name)` returns a local folder unchanged. A name that is not a local path is a hub repository:
one already in llamavid's format is used as downloaded; a LLaMA-VID release (the original's format) is
converted, together with the parts it needs (see `releases`), into a folder under `llamavid_home()`. That
folder's name is derived from the source revisions, so a new commit on the hub gives a new conversion and an
unchanged one is reused without converting again. Conversions are built in a hidden `.partial` folder and renamed
into place when complete, under a file lock, so an interrupted one is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from ..atomic_files import replace_folder
from ..errors import ModelLoadError, UsageError
from .releases import (
    BERT_VOCAB_FILE,
    BERT_VOCAB_REPO,
    CLIP_PROCESSORS,
    EVA_VIT_G,
    INSTRUCTBLIP,
    LLM_SIZES,
    RELEASES,
    Release,
    RemoteFile,
    image_size_of,
)
from .remote_files import check_sha256, fetch_remote_file

CONVERSION_FORMAT = 1
"""Bump when the converter's output changes, so that older cached conversions are not reused."""
SOURCE_RECORD = "llamavid-source.json"
MODEL_FILES = [
    "*.json",
    "*.safetensors",
    "pytorch_model*.bin",
    "tokenizer.model",
    "*.jinja",
    "vocab.txt",
]
"""What a model repository needs for inference; `training_args.bin` and optimizer states stay on the hub."""
QFORMER_PREFIX = "model.vlm_att_encoder."
EMBEDDED_EVA_PREFIX = "model.vision_tower.vision_tower."
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def llamavid_home() -> Path:
    """`LLAMAVID_HOME`, else `llamavid` inside the Hugging Face home (`HF_HOME`, default ~/.cache/huggingface)."""
    if os.environ.get("LLAMAVID_HOME"):
        return Path(os.environ["LLAMAVID_HOME"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "llamavid"


def is_hub_name(name: str | os.PathLike) -> bool:
    """`org/name` that is not an existing local path."""
    text = os.fspath(name)
    return not Path(text).expanduser().exists() and bool(_REPO_ID.match(text))


def _hub_call(function, what: str, *args, **kwargs):
    """A huggingface_hub download whose failure becomes one line saying what is missing and what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return function(*args, **kwargs)
    except HFValidationError as error:  # `org/..`, `org/a--b`, a name over 96 characters
        reason = str(error).splitlines()[0]
        raise ModelLoadError(f"{what} is neither a local folder nor a valid hub name ({reason})") from None
    except GatedRepoError as error:
        raise ModelLoadError(
            f"{what} is gated: accept its terms on the hub and log in (`hf auth login` or HF_TOKEN)"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"{what} is neither a local folder nor a repository on the hub (or it is private: log in with "
            "`hf auth login` or set HF_TOKEN)"
        ) from error
    except (RevisionNotFoundError, RemoteEntryNotFoundError) as error:
        raise ModelLoadError(f"{what}: {error}".splitlines()[0]) from error
    except LocalEntryNotFoundError as error:
        raise ModelLoadError(
            f"{what} is not in the Hugging Face cache and the hub cannot be reached (offline, or HF_HUB_OFFLINE "
            "is set): run once online, or download it yourself and pass the local path to `llamavid convert`"
        ) from error
    except HfHubHTTPError as error:
        raise ModelLoadError(f"downloading {what} failed: {str(error).splitlines()[0]}") from error


def download_repo(repo_id: str, patterns: list[str] | None = None, what: str | None = None) -> tuple[Path, str]:
    """(snapshot folder, commit) of a hub repository, fetching only the files that match `patterns`."""
    from huggingface_hub import snapshot_download

    folder = Path(_hub_call(snapshot_download, what or repo_id, repo_id, allow_patterns=patterns))
    return folder, folder.name  # the cache names snapshot folders by commit


def download_file(repo_id: str, filename: str, what: str | None = None) -> tuple[Path, str]:
    """(local path, commit) of one file of a hub repository."""
    from huggingface_hub import hf_hub_download

    path = Path(_hub_call(hf_hub_download, what or f"{repo_id}/{filename}", repo_id, filename))
    return path, path.parent.name


def _weight_keys(folder: Path) -> list[str]:
    """The tensor names of a released folder, read from its index (or the weights when there is none)."""
    index = sorted(folder.glob("*.index.json"))
    if index:
        return list(json.loads(index[0].read_text())["weight_map"])
    from ..model.checkpoint_files import ShardedWeights, original_weight_files

    return list(ShardedWeights(original_weight_files(folder)).meta())  # names and shapes only, no data read


def _is_llamavid_folder(folder: Path) -> bool:
    from ..model.configuration import LlamaVidConfig

    config = folder / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == LlamaVidConfig.model_type


class Conversion:
    """Everything one conversion needs, resolved to local files or hub revisions, and the folder it goes to."""

    def __init__(
        self,
        model: str | os.PathLike,
        processor: str | os.PathLike | None = None,
        qformer_vocab: str | os.PathLike | None = None,
        eva: str | os.PathLike | None = None,
        instructblip: str | os.PathLike | None = None,
        hints=None,
        chat_template: str | None = None,
        dtype=None,
        eva_sha256: str | None = None,
        instructblip_sha256: str | None = None,
    ):
        self.name = os.fspath(model)
        self.release: Release | None = RELEASES.get(self.name)
        if self.release is not None and self.release.stage == "pretrain":
            raise ModelLoadError(
                f"{self.name} is a stage-1 checkpoint (the adapter alone, mm_projector.bin), not a chat model: "
                f"chat with {self.name.replace('pretrain', 'full')}, or train from it with `llamavid train`"
            )
        self.hints = hints if hints is not None else (self.release.hints if self.release else None)
        self.chat_template = chat_template or (self.release.template if self.release else "vicuna_v1")
        self.dtype = dtype
        self.options = {"template": self.chat_template, "dtype": str(dtype).replace("torch.", "") if dtype else "keep"}
        self.options["hints"] = vars(self.hints) if self.hints else None
        # what was asked for explicitly; a cached conversion made with other options is redone
        self.requested = {
            key: self.options[key] for key, given in (("template", chat_template), ("dtype", dtype), ("hints", hints))
            if given is not None
        }
        self.sources: dict[str, str] = {}
        if is_hub_name(self.name):
            self.model_dir, commit = download_repo(self.name, MODEL_FILES)
            self.sources["model"] = f"{self.name}@{commit}"
        else:
            self.model_dir = Path(self.name).expanduser()
            if not (self.model_dir / "config.json").is_file():
                raise ModelLoadError(f"{self.model_dir} is not a model folder (no config.json)")
            self.sources["model"] = str(self.model_dir.resolve())
        self.ready = _is_llamavid_folder(self.model_dir)
        if self.ready:
            return
        self.original_config = json.loads((self.model_dir / "config.json").read_text())
        self.processor_dir = self._processor(processor)
        self.qformer_vocab = self._vocab(qformer_vocab)
        keys = _weight_keys(self.model_dir)
        has_tower = any(k.startswith(EMBEDDED_EVA_PREFIX) for k in keys)
        has_qformer = any(k.startswith(QFORMER_PREFIX) for k in keys)
        self.eva = self._weights(eva, None if has_tower else EVA_VIT_G, "--eva", "EVA-ViT-G weights", eva_sha256)
        self.instructblip = self._weights(
            instructblip, None if has_qformer else self._instructblip_default(), "--instructblip",
            "InstructBLIP Q-Former weights", instructblip_sha256,
        )
        self.sources["format"] = str(CONVERSION_FORMAT)

    # -- the parts -------------------------------------------------------------------------------------------

    def _processor(self, processor) -> Path:
        if processor is not None and not is_hub_name(processor):
            folder = Path(processor).expanduser()
            if not (folder / "preprocessor_config.json").is_file():
                raise ModelLoadError(f"--processor {processor}: no preprocessor_config.json there")
            self.sources["processor"] = str(folder.resolve())
            return folder
        repo = os.fspath(processor) if processor is not None else self._processor_repo()
        folder, commit = download_repo(
            repo, ["preprocessor_config.json"], f"the CLIP processor config {repo} (--processor)"
        )
        self.sources["processor"] = f"{repo}@{commit}"
        return folder

    def _processor_repo(self) -> str:
        size = self.release.image_size if self.release else image_size_of(self.original_config)
        if size is None:
            raise ModelLoadError(
                f"{self.name}'s config does not say its image size (image_processor "
                f"{self.original_config.get('image_processor')!r}): pass --processor "
                f"({' or '.join(CLIP_PROCESSORS.values())}, or a local folder)"
            )
        return CLIP_PROCESSORS[size]

    def _vocab(self, vocab) -> Path:
        if vocab is not None and Path(vocab).expanduser().is_file():
            self.sources["qformer_vocab"] = str(Path(vocab).expanduser().resolve())
            return Path(vocab).expanduser()
        if vocab is not None and not is_hub_name(vocab):
            raise ModelLoadError(f"--qformer-vocab {vocab}: neither a vocab.txt file nor a hub repository")
        if (self.model_dir / BERT_VOCAB_FILE).is_file() and vocab is None:
            self.sources["qformer_vocab"] = self.sources["model"]
            return self.model_dir / BERT_VOCAB_FILE
        repo = os.fspath(vocab) if vocab is not None else BERT_VOCAB_REPO
        path, commit = download_file(
            repo, BERT_VOCAB_FILE, f"the Q-Former vocabulary {repo}/{BERT_VOCAB_FILE} (--qformer-vocab)"
        )
        self.sources["qformer_vocab"] = f"{repo}@{commit}"
        return path

    def _instructblip_default(self) -> RemoteFile:
        if self.release is not None:
            return self.release.instructblip
        width = self.original_config.get("hidden_size")
        if width not in LLM_SIZES:
            raise ModelLoadError(
                f"{self.name} has no Q-Former weights and its LLM width {width} matches no InstructBLIP file: "
                "pass the Q-Former file with --instructblip"
            )
        return INSTRUCTBLIP[LLM_SIZES[width]]

    def _weights(
        self, value, default: RemoteFile | None, flag: str, what: str, sha256: str | None = None
    ) -> Path | RemoteFile | None:
        """A local file as given, a URL or the default as a RemoteFile to fetch once the cache misses; `sha256`
        (`--eva-sha256`) is the checksum the file must have, wherever it comes from.

        A local file given for a default part is taken to be that part: it fills the same cache entry, which is
        how an offline user prepares `--model NAME` once with `llamavid convert --model NAME --eva FILE`."""
        key = flag.lstrip("-")
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise UsageError(f"{flag}-sha256 {sha256!r}: a SHA-256 is 64 hexadecimal digits")
        sha256 = sha256.lower() if sha256 else None
        if value is None:
            if default is not None:
                self.sources[key] = default.path
                return replace(default, sha256=sha256) if sha256 else default
            return default
        text = os.fspath(value)
        if re.match(r"^https?://", text, re.IGNORECASE):
            self.sources[key] = text
            return RemoteFile.from_url(what, text, sha256)
        if "://" in text:
            raise UsageError(f"{flag} {text}: only http:// and https:// URLs are downloaded")
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"{flag} {text}: no such file")
        if sha256:
            check_sha256(path, sha256, f"{flag} {text}", f"pass the right file or {flag}-sha256")
        self.sources[key] = default.path if default is not None else str(path.resolve())
        return path

    # -- the conversion --------------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        record = json.dumps(self.sources, sort_keys=True)
        return hashlib.sha256(record.encode()).hexdigest()[:16]

    def cache_folder(self) -> Path:
        if not is_hub_name(self.name):
            raise ModelLoadError(f"{self.name} is a local folder: pass --out for the converted model")
        return llamavid_home() / "models" / self.name.replace("/", "--") / self.key

    def run(self, out: str | os.PathLike | None = None) -> Path:
        """The converted folder: `out`, or the cache entry (reused when it exists)."""
        if self.ready:
            if out is not None:
                raise ModelLoadError(f"{self.name} is already a llamavid model: use it directly, nothing to convert")
            return self.model_dir
        if out is not None:
            return self._convert(Path(out))
        target = self.cache_folder()
        if self._reusable(target):
            return target
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.parent / f".{target.name}.lock")):
            if self._reusable(target):  # another process finished it while we waited
                return target
            partial = target.parent / f".{target.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # what an interrupted conversion left
            print(f"Converting {self.name} into {target} (once; later runs reuse it)", file=sys.stderr, flush=True)
            self._convert(partial)
            # one made with other options is set aside, then removed once the new one is in place
            replace_folder(partial, target, aside=target.parent / f".{target.name}.stale")
        return target

    def converted(self) -> Path | None:
        """The folder to use without converting anything: the model itself when it is already in llamavid's
        format, or the cache entry an earlier conversion of these sources made; None when `run` would convert."""
        if self.ready:
            return self.model_dir
        if is_hub_name(self.name) and self._reusable(self.cache_folder()):
            return self.cache_folder()
        return None

    def _reusable(self, target: Path) -> bool:
        """A finished conversion of these sources whose options include every one asked for."""
        record = target / SOURCE_RECORD
        if not record.is_file():
            return False
        made_with = json.loads(record.read_text()).get("options", {})
        return all(made_with.get(key) == value for key, value in self.requested.items())

    def _fetch(self, part, flag: str) -> Path | None:
        if not isinstance(part, RemoteFile):
            return part
        skip = (
            f"pass a local copy with `llamavid convert --model {self.name} {flag} FILE`, or the file's checksum with "
            f"{flag}-sha256 HEX"
        )
        return fetch_remote_file(part, llamavid_home() / "downloads", skip)

    def _convert(self, output: Path) -> Path:
        from ..model.convert import convert_checkpoint

        convert_checkpoint(
            model_dir=self.model_dir,
            output_dir=output,
            processor_dir=self.processor_dir,
            qformer_vocab=self.qformer_vocab,
            eva_path=self._fetch(self.eva, "--eva"),
            instructblip_path=self._fetch(self.instructblip, "--instructblip"),
            hints=self.hints,
            chat_template=self.chat_template,
            dtype=self.dtype,
        )
        record = {"sources": self.sources, "options": self.options}
        (output / SOURCE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return output


def resolve_model(name: str | os.PathLike) -> Path:
    """A local folder as is; a hub name downloaded (and converted once, if it is a LLaMA-VID release)."""
    if not is_hub_name(name):
        return Path(name)
    return Conversion(name).run()


__all__ = ["Conversion", "download_file", "download_repo", "is_hub_name", "llamavid_home", "resolve_model"]
