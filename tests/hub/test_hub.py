"""Model names: a loopback server answering the file API huggingface_hub uses (HF_ENDPOINT points at it) serves
the public reference checkpoint under a release's name, beside the CLIP processor and BERT vocabulary repos, and
a second loopback server plays LAVIS's storage bucket for the EVA weights. `llamavid chat --model NAME` answers;
a second run downloads and converts nothing; a corrupted download, an offline empty cache and an interrupted
conversion are each handled without leaving anything usable-looking behind."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from llamavid.hub import RELEASES, markdown_table
from llamavid.hub.releases import (
    BERT_VOCAB_REPO,
    CLIP_PROCESSORS,
    EVA_VIT_G,
    image_size_of,
)
from llamavid.model.convert import ArchitectureHints
from llamavid.testing import tiny_tokenizer

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "llamavid-reference"
RELEASE = "YanweiLi/llama-vid-7b-full-224-video-fps-1"
README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.skipif(not (REFERENCE / "cases.json").is_file(), reason="no reference fixtures")


class FileServer:
    """A loopback HTTP server over {url path: bytes}, recording every request as (method, path)."""

    def __init__(self, routes):
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        self.authorizations: dict[str, str | None] = {}
        self.ranges: list[str] = []
        self.corrupt: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server.answer(self, body=False)

            def do_GET(self):
                server.answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()

    def gets(self, prefix: str = "") -> list[str]:
        return [path for method, path in self.requests if method == "GET" and path.startswith(prefix)]

    def answer(self, handler, body: bool):
        split = urlsplit(handler.path)
        path = unquote(split.path)
        self.requests.append((handler.command, path))
        self.authorizations[path] = handler.headers.get("Authorization")
        if handler.headers.get("Range"):
            self.ranges.append(handler.headers["Range"])
        found = self.lookup(path, split.query)
        if found is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RepoNotFound" if "/api/" in path else "EntryNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data, headers = found
        if path in self.corrupt and body:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = 0
        ranged = handler.headers.get("Range")
        if ranged and body:
            start = int(ranged.split("=")[1].split("-")[0])
        handler.send_response(206 if start else 200)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if body:
            handler.wfile.write(data[start:])

    def lookup(self, path, query):
        if path in self.routes:
            return self.routes[path], {}
        return None


class FakeHub(FileServer):
    """The part of the Hugging Face hub's API that `snapshot_download` and `hf_hub_download` use."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}
        super().__init__({})

    def publish(self, repo: str, files: dict[str, bytes]):
        """A new commit of `repo`."""
        self.repos[repo] = files
        self.commits[repo] = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()

    def lookup(self, path, query):
        for repo, files in self.repos.items():
            commit = self.commits[repo]
            api = f"/api/models/{repo}/"
            if path.startswith(api + "revision/"):
                siblings = [{"rfilename": name} for name in files]
                return json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode(), {}
            if path.startswith(api + "tree/"):
                tree = [
                    {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in files.items()
                ]
                return json.dumps(tree).encode(), {"Content-Type": "application/json"}
            resolve = f"/{repo}/resolve/"
            if path.startswith(resolve):
                name = path[len(resolve) :].split("/", 1)[1]
                if name in files:
                    etag = hashlib.sha1(files[name]).hexdigest()
                    return files[name], {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
        return None


class Bucket(FileServer):
    """LAVIS's storage bucket: files with Google Cloud Storage's `x-goog-hash` header."""

    def lookup(self, path, query):
        if path not in self.routes:
            return None
        md5 = base64.b64encode(hashlib.md5(self.routes[path]).digest()).decode()
        return self.routes[path], {"x-goog-hash": f"crc32c=AAAAAA==,md5={md5}"}


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def servers(tmp_path):
    """(hub, bucket): the reference checkpoint published as RELEASE (plus an LLM tokenizer, which the reference
    folder lacks), the CLIP processor and BERT repos, and the EVA file in the bucket."""
    model_files = _folder_files(REFERENCE / "llama-vid-tiny")
    tokenizer_dir = tmp_path / "tokenizer"
    tiny_tokenizer().save_pretrained(tokenizer_dir)
    model_files.update(_folder_files(tokenizer_dir))
    model_files["training_args.bin"] = b"a pickle nobody should download"
    hub = FakeHub(
        {
            RELEASE: model_files,
            CLIP_PROCESSORS[224]: _folder_files(REFERENCE / "processor"),
            BERT_VOCAB_REPO: {"vocab.txt": (REFERENCE / "bert-base-uncased-vocab.txt").read_bytes()},
        }
    )
    bucket = Bucket({"/" + EVA_VIT_G.path: (REFERENCE / "eva_vit_tiny.pth").read_bytes()})
    yield hub, bucket
    hub.close()
    bucket.close()


@pytest.fixture
def hub_env(servers, tmp_path, monkeypatch):
    """The environment a user's shell would have, pointed at the loopback servers and an empty cache."""
    from huggingface_hub import constants

    hub, bucket = servers
    home = tmp_path / "hf-home"
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "LLAMAVID_LAVIS_ENDPOINT": bucket.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LLAMAVID_HOME", raising=False)
    # huggingface_hub reads these at import time; this process imported it already
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # the reference checkpoint is tiny: its head counts are not those of EVA-ViT-G and BERT-base
    cases = json.loads((REFERENCE / "cases.json").read_text())["config"]
    hints = ArchitectureHints(vision_heads=cases["vheads"], qformer_heads=cases["qheads"])
    monkeypatch.setitem(RELEASES, RELEASE, replace(RELEASES[RELEASE], hints=hints))
    return hub, bucket, home


def _chat(capsys, *extra):
    from llamavid.cli import main

    code = main(["chat", "--model", RELEASE, "--prompt", "What is in the video?", "--max-new-tokens", "4", *extra])
    return code, capsys.readouterr()


def _entries(home: Path) -> list[Path]:
    folder = home / "llamavid" / "models" / RELEASE.replace("/", "--")
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_release_name_is_downloaded_converted_once_and_reused(hub_env, capsys, image_path):
    hub, bucket, home = hub_env
    code, first = _chat(capsys, "--image", str(image_path))
    assert code == 0, first.err
    assert first.out.strip(), "no answer"
    assert "Converting" in first.err
    fetched = hub.gets(f"/{RELEASE}/resolve/")
    assert any(p.endswith("pytorch_model-00001-of-00002.bin") for p in fetched)
    assert not any(p.endswith("training_args.bin") for p in fetched)
    assert bucket.gets() == ["/" + EVA_VIT_G.path]
    entry = [p for p in _entries(home) if not p.name.startswith(".")]
    assert len(entry) == 1 and (entry[0] / "llamavid-source.json").is_file()
    assert (entry[0] / "model.safetensors").is_file() or list(entry[0].glob("model*.safetensors"))

    hub.requests.clear()
    bucket.requests.clear()
    code, second = _chat(capsys, "--image", str(image_path))
    assert code == 0, second.err
    assert second.out == first.out
    assert "Converting" not in second.err
    assert hub.gets("/" + RELEASE.split("/")[0]) == [] and not hub.gets(f"/{CLIP_PROCESSORS[224]}")
    assert bucket.requests == []
    assert [p for p in _entries(home) if not p.name.startswith(".")] == entry


def test_the_users_token_goes_to_the_hub_only(hub_env, capsys, image_path, monkeypatch):
    from huggingface_hub import constants

    hub, bucket, _ = hub_env
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False, raising=False)
    assert _chat(capsys, "--image", str(image_path))[0] == 0
    repos = [path for path in hub.authorizations if RELEASE in path or BERT_VOCAB_REPO in path]
    assert repos and {hub.authorizations[path] for path in repos} == {"Bearer hf_secret"}
    assert set(bucket.authorizations.values()) == {None}


def test_convert_to_a_folder_with_options(hub_env, tmp_path, capsys):
    import torch

    from llamavid.cli import main
    from llamavid.inference.loading import load_model

    out = tmp_path / "converted"
    assert main(["convert", "--model", RELEASE, "--out", str(out), "--dtype", "float16"]) == 0
    model, processor = load_model(out, dtype="float16")
    assert next(model.parameters()).dtype == torch.float16
    assert json.loads((out / "llamavid-source.json").read_text())["options"]["dtype"] == "float16"


def test_a_new_commit_on_the_hub_is_noticed(hub_env, capsys, image_path):
    hub, _, home = hub_env
    assert _chat(capsys, "--image", str(image_path))[0] == 0
    files = dict(hub.repos[RELEASE])
    config = json.loads(files["config.json"])
    config["max_token"] = 1024
    files["config.json"] = json.dumps(config).encode()
    hub.publish(RELEASE, files)
    code, out = _chat(capsys, "--image", str(image_path))
    assert code == 0, out.err
    assert "Converting" in out.err
    assert len([p for p in _entries(home) if not p.name.startswith(".")]) == 2


def test_a_corrupted_eva_download_is_refused_and_deleted(hub_env, capsys, image_path):
    hub, bucket, home = hub_env
    bucket.corrupt.add("/" + EVA_VIT_G.path)
    code, out = _chat(capsys, "--image", str(image_path))
    assert code == 2
    assert "corrupt" in out.err and "--eva" in out.err and "Traceback" not in out.err
    downloads = home / "llamavid" / "downloads"
    assert not [p for p in downloads.rglob("*") if p.is_file()]
    assert not [p for p in _entries(home) if not p.name.startswith(".")]
    bucket.corrupt.clear()
    assert _chat(capsys, "--image", str(image_path))[0] == 0


def test_an_interrupted_eva_download_resumes(servers, tmp_path, monkeypatch):
    from llamavid.hub.remote_files import fetch_remote_file

    _, bucket = servers
    data = bucket.routes["/" + EVA_VIT_G.path]
    monkeypatch.setenv("LLAMAVID_LAVIS_ENDPOINT", bucket.url)
    partial = tmp_path / (EVA_VIT_G.path + ".part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:1000])
    path = fetch_remote_file(EVA_VIT_G, tmp_path, "pass --eva")
    assert path.read_bytes() == data and not partial.exists()
    assert bucket.ranges == ["bytes=1000-"]


def test_a_file_without_a_published_checksum_is_not_trusted(tmp_path, monkeypatch):
    from llamavid.hub.remote_files import ChecksumError, fetch_remote_file

    plain = FileServer({"/" + EVA_VIT_G.path: b"weights"})
    monkeypatch.setenv("LLAMAVID_LAVIS_ENDPOINT", plain.url)
    try:
        with pytest.raises(ChecksumError, match="no checksum.*pass --eva"):
            fetch_remote_file(EVA_VIT_G, tmp_path, "pass --eva")
    finally:
        plain.close()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    pinned = replace(EVA_VIT_G, sha256=hashlib.sha256(b"weights").hexdigest())
    plain = FileServer({"/" + EVA_VIT_G.path: b"weights"})
    monkeypatch.setenv("LLAMAVID_LAVIS_ENDPOINT", plain.url)
    try:
        assert fetch_remote_file(pinned, tmp_path, "pass --eva").read_bytes() == b"weights"
    finally:
        plain.close()


def test_the_published_md5_is_read_from_either_header():
    from llamavid.hub.remote_files import server_md5

    digest = hashlib.md5(b"x").digest()
    b64 = base64.b64encode(digest).decode()
    assert server_md5({"x-goog-hash": f"crc32c=n03x6A==,md5={b64}"}) == digest.hex()
    assert server_md5({"content-md5": b64}) == digest.hex()
    assert server_md5({"x-goog-hash": "crc32c=n03x6A=="}) is None


def test_an_interrupted_conversion_leaves_nothing_usable_and_restarts(hub_env, capsys, image_path, monkeypatch):
    from llamavid.model import convert

    hub, bucket, home = hub_env
    real = convert.convert_checkpoint

    def killed(**kwargs):
        real(**kwargs)
        raise KeyboardInterrupt  # after the weights are written, before the entry is complete

    monkeypatch.setattr(convert, "convert_checkpoint", killed)
    assert _chat(capsys, "--image", str(image_path))[0] == 130
    assert all(p.name.startswith(".") for p in _entries(home))
    assert not [p for p in _entries(home) if (p / "llamavid-source.json").is_file() and not p.name.startswith(".")]
    monkeypatch.setattr(convert, "convert_checkpoint", real)
    code, out = _chat(capsys, "--image", str(image_path))
    assert code == 0, out.err
    assert "Converting" in out.err
    assert not [p for p in _entries(home) if p.name.endswith(".partial")]


def test_offline_with_an_empty_cache_says_what_is_missing(hub_env, tmp_path, image_path):
    hub, _, _ = hub_env
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "llamavid.cli", "chat", "--model", RELEASE, "--image", str(image_path),
         "--prompt", "hi"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 2, result.stderr
    assert RELEASE in result.stderr and "HF_HUB_OFFLINE" in result.stderr and "Traceback" not in result.stderr
    assert hub.requests == []


def test_offline_after_one_online_run_needs_nothing(hub_env, capsys, image_path):
    hub, bucket, _ = hub_env
    assert _chat(capsys, "--image", str(image_path))[0] == 0
    hub.requests.clear()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "llamavid.cli", "chat", "--model", RELEASE, "--image", str(image_path),
         "--prompt", "What is in the video?", "--max-new-tokens", "4"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and hub.requests == []


def test_convert_takes_local_files_for_parts_and_fills_the_cache(hub_env, capsys, image_path):
    """An offline user with eva_vit_g.pth on disk prepares the name once; chat then needs no bucket."""
    hub, bucket, home = hub_env
    from llamavid.cli import main

    eva = REFERENCE / "eva_vit_tiny.pth"
    assert main(["convert", "--model", RELEASE, "--eva", str(eva)]) == 0
    assert "Converting" in capsys.readouterr().err
    assert bucket.requests == []
    code, out = _chat(capsys, "--image", str(image_path))
    assert code == 0, out.err
    assert "Converting" not in out.err and bucket.requests == []


def test_a_pretrain_release_is_refused_with_the_full_one_named(hub_env, capsys):
    from llamavid.cli import main

    code = main(["chat", "--model", "YanweiLi/llama-vid-7b-pretrain-224", "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and "stage-1" in err and "YanweiLi/llama-vid-7b-full-224" in err


def test_an_unknown_name_says_it_is_neither_folder_nor_repository(hub_env, capsys):
    from llamavid.cli import main

    code = main(["chat", "--model", "someone/no-such-model", "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and "someone/no-such-model" in err and "local folder" in err


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes((REFERENCE / "image.png").read_bytes())
    return path


# -- the table -------------------------------------------------------------------------------------------------

ORIGINAL_README_MODELS = {
    # every checkpoint the original README lists: (image size, LLM, stage)
    "llama-vid-7b-full-224": (224, "7b", "full"),
    "llama-vid-7b-full-336": (336, "7b", "full"),
    "llama-vid-13b-full-336": (336, "13b", "full"),
    "llama-vid-7b-full-224-video-fps-1": (224, "7b", "full"),
    "llama-vid-13b-full-224-video-fps-1": (224, "13b", "full"),
    "llama-vid-7b-full-224-long-video": (224, "7b", "full"),
    "llama-vid-7b-pretrain-224": (224, "7b", "pretrain"),
    "llama-vid-7b-pretrain-336": (336, "7b", "pretrain"),
    "llama-vid-13b-pretrain-336": (336, "13b", "pretrain"),
    "llama-vid-7b-pretrain-224-video-fps-1": (224, "7b", "pretrain"),
    "llama-vid-13b-pretrain-224-video-fps-1": (224, "13b", "pretrain"),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_README_MODELS))
def test_every_release_is_in_the_table_with_the_parts_it_needs(name):
    size, llm, stage = ORIGINAL_README_MODELS[name]
    release = RELEASES[f"YanweiLi/{name}"]
    assert (release.image_size, release.llm, release.stage) == (size, llm, stage)
    parts = release.parts()
    assert parts["--processor"] == ("openai/clip-vit-large-patch14-336" if size == 336 else "openai/clip-vit-large-patch14")
    assert parts["--qformer-vocab"] == "google-bert/bert-base-uncased/vocab.txt"
    assert parts["--eva"].endswith("LAVIS/models/BLIP2/eva_vit_g.pth")
    assert f"instruct_blip_vicuna{llm[:-1]}b_trimmed.pth" in parts["--instructblip"]
    assert release.template == "vicuna_v1"
    assert ("2 per frame" in release.tokens) == ("video" in release.use)


def test_the_image_size_is_read_from_a_released_config():
    assert image_size_of({"image_processor": "./llamavid/processor/clip-patch14-336"}) == 336
    assert image_size_of({"image_processor": "./llamavid/processor/clip-patch14-224/"}) == 224
    assert image_size_of({"image_processor": "./llamavid/processor/clip-patch14-224-336"}) == 336
    assert image_size_of({}) is None


def test_the_readme_table_is_the_code_table():
    assert markdown_table() in README.read_text()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a/../../../../etc/eva.pth",
        "http://127.0.0.1:9/a/..%2F..%2F..%2Fescaped.pth",
        "http://127.0.0.1:9/a/%2E%2E",
        "http://127.0.0.1:9/a/..\\..\\x.pth?name=../../y",
        "http://127.0.0.1:9/",
        "http://127.0.0.1:9/.hidden",
    ],
)
def test_a_url_gives_a_download_name_inside_the_download_folder(url, tmp_path):
    from llamavid.hub.releases import RemoteFile

    remote = RemoteFile.from_url("EVA", url)
    folder, name = Path(remote.path).parts
    assert folder == "urls" and not name.startswith(".") and "/" not in name and "\\" not in name
    assert (tmp_path / remote.path).resolve().parent == (tmp_path / "urls").resolve()
    assert remote.url == url
    assert RemoteFile.from_url("EVA", url, "0" * 64).path != remote.path  # another pin, another file


def test_a_url_is_downloaded_from_that_url_and_checked(tmp_path, monkeypatch):
    from llamavid.hub.releases import RemoteFile
    from llamavid.hub.remote_files import ChecksumError, fetch_remote_file

    data = b"eva weights"
    lavis = FileServer({})  # the default endpoint: must never be asked
    mirror = Bucket({"/m/../../../escaped.pth": data})  # the bucket publishes its MD5
    plain = FileServer({"/eva.pth": data})  # no published checksum
    monkeypatch.setenv("LLAMAVID_LAVIS_ENDPOINT", lavis.url)
    downloads = tmp_path / "downloads"
    try:
        url = f"{mirror.url}/m/..%2F..%2F..%2Fescaped.pth"
        path = fetch_remote_file(RemoteFile.from_url("EVA", url), downloads, "pass --eva")
        assert path.read_bytes() == data and path.parent == downloads / "urls"
        assert mirror.gets() == ["/m/../../../escaped.pth"] and lavis.requests == []
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]

        with pytest.raises(ChecksumError, match="publishes no checksum.*pass --eva"):
            fetch_remote_file(RemoteFile.from_url("EVA", f"{plain.url}/eva.pth"), downloads, "pass --eva")
        wrong = RemoteFile.from_url("EVA", f"{plain.url}/eva.pth", hashlib.sha256(b"other").hexdigest())
        with pytest.raises(ChecksumError, match="corrupt"):
            fetch_remote_file(wrong, downloads, "pass --eva")
        pinned = RemoteFile.from_url("EVA", f"{plain.url}/eva.pth", hashlib.sha256(data).hexdigest())
        assert fetch_remote_file(pinned, downloads, "pass --eva").read_bytes() == data
        assert lavis.requests == []
    finally:
        for server in (lavis, mirror, plain):
            server.close()


def test_the_published_sha256_is_read_from_the_standard_digest_headers():
    from llamavid.hub.remote_files import server_sha256

    digest = hashlib.sha256(b"x").digest()
    b64 = base64.b64encode(digest).decode()
    assert server_sha256({"repr-digest": f"sha-512=:AAAA:, sha-256=:{b64}:"}) == digest.hex()
    assert server_sha256({"digest": f"SHA-256={b64}"}) == digest.hex()
    assert server_sha256({"digest": "MD5=AAAA"}) is None


def test_convert_downloads_eva_from_the_url_given(hub_env, capsys, tmp_path):
    from llamavid.cli import main

    hub, bucket, home = hub_env
    data = (REFERENCE / "eva_vit_tiny.pth").read_bytes()
    mirror = FileServer({"/mirror/eva_vit_g.pth": data})
    try:
        url = f"{mirror.url}/mirror/eva_vit_g.pth"
        out = tmp_path / "converted"
        assert main(["convert", "--model", RELEASE, "--eva", url, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "publishes no checksum" in err and "--eva-sha256" in err and "Traceback" not in err
        assert main(["convert", "--model", RELEASE, "--eva", url, "--eva-sha256", "abc", "--out", str(out)]) == 2
        assert "64 hexadecimal digits" in capsys.readouterr().err
        sha = hashlib.sha256(data).hexdigest()
        assert main(["convert", "--model", RELEASE, "--eva", url, "--eva-sha256", sha, "--out", str(out)]) == 0
        assert (out / "config.json").is_file()
        assert bucket.requests == [] and mirror.gets() == ["/mirror/eva_vit_g.pth"]
        [download] = [p for p in (home / "llamavid" / "downloads").rglob("*") if p.is_file()]
        assert download.parent.name == "urls" and download.name.endswith("-eva_vit_g.pth")
    finally:
        mirror.close()
    local = REFERENCE / "eva_vit_tiny.pth"
    code = main(["convert", "--model", RELEASE, "--eva", str(local), "--eva-sha256", "0" * 64, "--out", str(out)])
    assert code == 2 and "not the 000" in capsys.readouterr().err
