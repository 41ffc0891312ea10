"""The console script: its commands and help, flags derived from the settings dataclasses, user errors as one line,
everything else with its traceback, and answers generated in the main thread."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from llamavid.cli import build_parser, main
from llamavid.cli.flags import flag_fields
from llamavid.eval.judge import JudgeSettings
from llamavid.eval.runner import RunSettings
from llamavid.inference.settings import GenerationSettings, Sampling
from llamavid.model.modeling import LlamaVidForConditionalGeneration
from llamavid.serve.settings import ServeSettings

COMMANDS = ("chat", "convert", "demo", "eval", "export-vllm", "extract-features", "serve", "train", "make-synthetic")


@pytest.fixture
def help_of(capsys):
    def read(*args: str) -> str:
        with pytest.raises(SystemExit):
            build_parser().parse_args([*args, "--help"])
        return capsys.readouterr().out

    return read


def test_the_top_level_help_lists_every_command(help_of):
    text = help_of()
    assert all(command in text for command in COMMANDS)


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


@pytest.mark.parametrize(("command", "settings"), [(("chat",), GenerationSettings), (("chat",), Sampling),
                                                   (("serve",), ServeSettings), (("eval", "run"), RunSettings),
                                                   (("eval", "score"), JudgeSettings)])
def test_a_commands_flags_are_its_settings_fields(help_of, command, settings):
    text = help_of(*command)
    for field in flag_fields(settings):
        assert _flag(field) in text, field.name
        assert " ".join(field.metadata["help"].split()[:3]) in " ".join(text.split()), field.name


def test_flag_values_become_the_settings(tmp_path):
    from llamavid.cli.flags import settings_from_args

    args = build_parser().parse_args(["chat", "--model", "m", "--temperature", "0.5", "--top-p", "0.8", "--max-frames", "9"])
    assert settings_from_args(args, GenerationSettings) == GenerationSettings(temperature=0.5, top_p=0.8)
    assert settings_from_args(args, Sampling) == Sampling(max_frames=9)
    args = build_parser().parse_args(["serve", "--no-web", "--allowed-local-media-path", str(tmp_path),
                                      "--max-media-mb", "2", "--served-model-name", "x"])
    settings = settings_from_args(args, ServeSettings)
    assert not settings.web and settings.allowed_local_media_path == [tmp_path.resolve()]
    assert settings.max_media_bytes == 2 << 20 and settings.model_name == "x"


@pytest.fixture(scope="module")
def model_dir(tiny_folder):
    return tiny_folder


def test_a_user_error_is_one_line_and_status_2(model_dir, capsys):
    assert main(["chat", "--model", str(model_dir), "--temperature", "-1", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "llamavid chat: error: temperature must be >= 0, got -1.0"


def test_a_bug_keeps_its_traceback(model_dir, monkeypatch):
    """Out of memory, or a bug: not the user's doing, so not a one-line 'error' with status 2."""

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(LlamaVidForConditionalGeneration, "generate", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["chat", "--model", str(model_dir), "--prompt", "hi"])


def test_answers_are_generated_in_the_main_thread(model_dir, monkeypatch, capsys):
    """No helper thread runs torch work for the command line, so nothing of it is left when the process ends."""
    threads, original = [], LlamaVidForConditionalGeneration.generate

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaVidForConditionalGeneration, "generate", recording)
    assert main(["chat", "--model", str(model_dir), "--prompt", "hi", "--max-new-tokens", "4"]) == 0
    assert threads == [threading.main_thread()]
    assert capsys.readouterr().out.endswith("\n")


def test_train_dry_run_prints_the_plan(capsys):
    import json
    from pathlib import Path

    recipe = Path(__file__).parents[2] / "recipes" / "tiny-synthetic.yaml"
    assert main(["train", str(recipe), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["prepare"] == ["stage0"] and plan["stages"] == ["stage1", "stage2"]


def test_an_unknown_prepare_step_is_a_one_line_recipe_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {path: m}\nprepare: {stage9: {}}\nstages: []\n")
    assert main(["train", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llamavid train: error:") and "prepare.stage9 is not a registered step" in err
    assert "stage0" in err  # the registered ones are listed


@pytest.mark.parametrize("name", ["org/..", "org/a--b", "org/a..b", "org/" + "x" * 100])
@pytest.mark.parametrize("command", [["convert"], ["chat", "--prompt", "hi"]])
def test_a_malformed_hub_name_is_one_line(name, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # `org` is no local folder here
    assert main([command[0], "--model", name, *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nor a valid hub name" in err and name in err


def test_convert_on_a_converted_folder_says_there_is_nothing_to_do(model_dir, tmp_path, capsys):
    assert main(["convert", "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "is already a llamavid model" in out and "nothing to convert" in out and "Converted" not in out
    assert main(["convert", "--model", str(model_dir), "--out", str(tmp_path / "copy")]) == 2
    assert "already a llamavid model" in capsys.readouterr().err
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "--model", "{missing}"],
        ["extract-features", "{missing}", "--model", "{missing}"],
        ["eval", "run", "gqa", "--model", "{missing}", "--data", "{missing}"],
    ],
)
def test_an_unwritable_output_folder_is_found_before_anything_loads(command, tmp_path, capsys):
    """The model and data named do not exist: the error is about --out, so it came first."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    missing = str(tmp_path / "no-such-model")
    argv = [part.format(missing=missing) for part in command]
    assert main([*argv, "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"--out {blocker / 'out'}: {blocker} is a file, not a folder"), err


def test_an_unwritable_conversion_cache_is_found_before_any_download(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LLAMAVID_HOME", str(blocker / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "--model", "someone/some-model"]) == 2
    assert "the conversion cache (LLAMAVID_HOME or HF_HOME)" in capsys.readouterr().err
