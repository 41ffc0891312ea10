"""Two processes on 127.0.0.1 (gloo on the CPU) train stage 1 then stage 2 of a toy recipe under DDP, FSDP2,
DeepSpeed ZeRO-2 and ZeRO-3, through the three launchers the docs give (torchrun, `accelerate launch`,
`deepspeed`), with the shipped configs (recipes/deepspeed/*.json, recipes/accelerate/fsdp.yaml).

Each path must give the loss curve and the weights of one process with the same global batch: per-device batch
4 on 2 ranks against batch 4 x gradient accumulation 2 on one (both are the mean of two micro-batch means). The
steps x global batch stay within one epoch: at an epoch's end the ranks pad an uneven last batch, one process
does not. Each stage records the distributed type that really ran (accelerate falls back to DDP quietly), its
saved model reloads through `llamavid.load_model`, and a run stopped at a checkpoint and resumed ends with the
same weights. ZeRO-2 offload (`zero2_offload.json`) compiles DeepSpeed's `cpu_adam` (about a minute and 5 GB):
not here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from llamavid.testing import free_port, save_llm_folder

pytestmark = pytest.mark.training

ROOT = Path(__file__).parents[2]
LAUNCHER = Path(__file__).with_name("dist_launch.py")
STEPS, BATCH = 4, 4


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from llamavid.toy.synthetic import SyntheticSettings, generate

    out = tmp_path_factory.mktemp("toy-synthetic")
    generate(out, SyntheticSettings(num_videos=32, heldout_videos=4, seed=3))
    assert len(json.loads((out / "train.json").read_text())) >= STEPS * BATCH * 2  # within one epoch
    return out


def toy_recipe(data: Path, out: Path, **training) -> dict:
    """Stage 1 (adapter only, frozen-tower feature cache) then stage 2 (init from stage 1) of a tiny LLaMA-VID."""
    from llamavid.toy.recipes import two_stage_recipe

    return two_stage_recipe(data, out, **{"max_steps": STEPS, "per_device_train_batch_size": BATCH,
                                          "report_to": "none", **training})


@pytest.fixture(scope="module")
def reference(toy_data, tmp_path_factory):
    """One process, batch 4 x accumulation 2: the run every two-process path must reproduce."""
    from llamavid.train.recipe import recipe_from_dict
    from llamavid.train.run import run_recipe

    out = tmp_path_factory.mktemp("reference")
    figures = run_recipe(recipe_from_dict(toy_recipe(toy_data, out, gradient_accumulation_steps=2)))
    assert figures["stage1"]["distributed"] == {"type": "NO", "world_size": 1}
    return out, figures


def launch(launcher: str, recipe: dict, tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`llamavid train RECIPE ARGUMENTS` in two processes started by `launcher` (torchrun, accelerate:CONFIG,
    deepspeed)."""
    recipe_file = tmp_path / f"recipe-{free_port()}.yaml"
    recipe_file.write_text(json.dumps(recipe))  # JSON is YAML
    port = str(free_port())
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", port]
    elif launcher.startswith("accelerate:"):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launcher.split(":", 1)[1],
                   "--main_process_port", port]
    else:  # without --no_local_rank: `llamavid` takes the --local_rank the launcher adds
        command = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2",
                   "--master_addr", "127.0.0.1", "--master_port", port]
    command += [str(LAUNCHER), "train", str(recipe_file), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLAMAVID_DEBUG": "1", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and killed_by_abort(result.stderr):
        # A rank aborted inside gloo on a loaded 2-core machine now and then (not reproducible alone). Such a
        # crash is the transport's, never a wrong result; one more try, and the first log is kept for reading.
        (tmp_path / f"aborted-{port}.log").write_text(result.stdout + "\n" + result.stderr)
        warnings.warn(f"a rank aborted (log: {tmp_path / f'aborted-{port}.log'}); launching once more", stacklevel=2)
        command[command.index(port)] = port = str(free_port())
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        log = tmp_path / f"launch-{port}.log"
        log.write_text(result.stdout + "\n" + result.stderr)
        # the first rank to fail says why; the other's error is only the broken connection that followed
        causes = [line for line in result.stderr.splitlines() if "Error" in line or "rank0" in line]
        pytest.fail(f"{' '.join(command[2:4])} failed (whole log: {log}):\n" + "\n".join(causes[-60:]))
    return result


def killed_by_abort(stderr: str) -> bool:
    """Whether a launch failed because a process died of SIGABRT (the launchers' reports of a child's signal)."""
    return "SIGABRT" in stderr or "return code = -6" in stderr


def stage_figures(out: Path, stage: str) -> dict:
    return json.loads((out / stage / "figures.json").read_text())


def assert_same_run(out: Path, reference, expected: dict) -> None:
    """Loss curves, stage-1 adapter and final model of `out` as in the one-process reference; `expected` is
    the distributed record each stage must show."""
    from safetensors.torch import load_file

    from llamavid import load_model

    reference_out, reference_figures = reference
    for stage in ("stage1", "stage2"):
        figures = stage_figures(out, stage)
        assert figures["distributed"] == expected, stage
        assert figures["steps"] == STEPS
        assert figures["losses"] == pytest.approx(reference_figures[stage]["losses"], rel=1e-5), stage
    adapter = load_file(str(out / "stage1" / "visual_adapter.safetensors"))
    wanted = load_file(str(reference_out / "stage1" / "visual_adapter.safetensors"))
    assert sorted(adapter) == sorted(wanted)
    for name, tensor in wanted.items():  # whole tensors (ZeRO-3 and FSDP hold shards while training)
        torch.testing.assert_close(adapter[name], tensor, rtol=0, atol=1e-5, msg=name)
    model, _ = load_model(out / "stage2", device="cpu", dtype="float32")
    wanted_model, _ = load_model(reference_out / "stage2", device="cpu", dtype="float32")
    mine, theirs = model.state_dict(), wanted_model.state_dict()
    assert sorted(mine) == sorted(theirs)
    for name, tensor in theirs.items():
        torch.testing.assert_close(mine[name], tensor, rtol=0, atol=1e-5, msg=name)


def resumed_stage(recipe: dict, stage: str, launcher: str, tmp_path: Path) -> None:
    """`stage` stopped at checkpoint-2 in one launch and resumed to the end in another."""
    stopped = copy.deepcopy(recipe)
    index = [s["name"] for s in recipe["stages"]].index(stage)
    stopped["stages"][index]["training"].update(max_steps=2, save_strategy="steps", save_steps=2)
    launch(launcher, stopped, tmp_path, "--only", stage)
    stage_dir = Path(recipe["output_dir"]) / stage
    assert (stage_dir / "checkpoint-2").is_dir() and stage_figures(Path(recipe["output_dir"]), stage)["steps"] == 2
    resumed = copy.deepcopy(stopped)
    resumed["stages"][index]["training"]["max_steps"] = STEPS
    launch(launcher, resumed, tmp_path, "--only", stage)


def test_ddp_trains_both_stages_in_one_launch(toy_data, reference, tmp_path):
    recipe = toy_recipe(toy_data, tmp_path / "run")
    recipe["stages"][1]["shared_prefix"] = True  # off with a message: the DDP wrapper hides the model's parts
    result = launch("torchrun", recipe, tmp_path)
    printed = [line for line in result.stdout.splitlines() if line.startswith('{"recipe"')]
    assert len(printed) == 1  # one process prints the figures
    assert set(json.loads(printed[0])) == {"recipe", "stage1", "stage2"}
    assert "shared_prefix is off in a run of 2 processes" in result.stderr
    assert_same_run(tmp_path / "run", reference, {"type": "MULTI_CPU", "world_size": 2})


def test_ddp_runs_a_prepare_step_once(toy_data, tmp_path):
    """Stage 0 trains on the main process; the other waits and reads the saved tower back."""
    recipe = toy_recipe(toy_data, tmp_path / "run", max_steps=1)
    recipe["prepare"] = {"stage0": {"data_dir": str(toy_data), "steps": 2, "batch_size": 4, "warmup_steps": 0}}
    recipe["stages"] = recipe["stages"][:1]
    result = launch("torchrun", recipe, tmp_path)
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"recipe"')]
    assert len(printed) == 1 and "reused" not in printed[0]["stage0"]  # trained, by the process that printed
    assert result.stderr.count("stage0: reusing") == 1  # and read back by the other one
    assert printed[0]["stage1"]["distributed"] == {"type": "MULTI_CPU", "world_size": 2}


def test_fsdp2_one_stage_per_launch(toy_data, reference, tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "recipes" / "accelerate" / "fsdp.yaml").read_text())
    config.update(num_processes=2, mixed_precision="no", main_process_ip="127.0.0.1")  # bf16 is a GPU setting
    config_file = tmp_path / "fsdp.yaml"
    config_file.write_text(yaml.safe_dump(config))
    launcher = f"accelerate:{config_file}"
    recipe = toy_recipe(toy_data, tmp_path / "run")
    resumed_stage(recipe, "stage1", launcher, tmp_path)  # the adapter checkpoint goes back into DTensors
    launch(launcher, recipe, tmp_path, "--only", "stage2")
    assert_same_run(tmp_path / "run", reference, {"type": "FSDP", "world_size": 2, "fsdp_version": 2})


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_one_stage_per_launch(toy_data, reference, tmp_path, stage):
    pytest.importorskip("deepspeed")
    config = str(ROOT / "recipes" / "deepspeed" / f"zero{stage}.json")
    recipe = toy_recipe(toy_data, tmp_path / "run", deepspeed=config)
    launch("deepspeed" if stage == 3 else "torchrun", recipe, tmp_path, "--only", "stage1")
    if stage == 3:  # the partitioned model's checkpoint, resumed
        resumed_stage(recipe, "stage2", "torchrun", tmp_path)
    else:
        launch("torchrun", recipe, tmp_path, "--only", "stage2")
    assert_same_run(tmp_path / "run", reference, {"type": "DEEPSPEED", "world_size": 2, "zero_stage": stage})
    shutil.rmtree(tmp_path / "run")  # a ZeRO checkpoint holds the optimiser state too


LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def lora_base(tmp_path_factory):
    """An HF LLM folder: the LLM the toy model starts from and its unmerged LoRA adapter goes on (base_llm)."""
    from llamavid.testing import tiny_model_and_processor

    base = tmp_path_factory.mktemp("base-llm")
    model, processor = tiny_model_and_processor(seed=3)
    save_llm_folder(model, processor, base)
    return base


def lora_recipe(data: Path, out: Path, base: Path, **training) -> dict:
    """The toy recipe on the base LLM, stage 2 training an unmerged LoRA (saved as an adapter folder)."""
    recipe = toy_recipe(data, out, **training)
    recipe["model"]["settings"]["llm"] = str(base)
    recipe["model"]["config"] = {"base_llm": str(base)}
    recipe["stages"][1]["stage"] = {"preset": "stage2", "lora": LORA, "merge_lora": False}
    return recipe


@pytest.fixture(scope="module")
def lora_reference(toy_data, lora_base, tmp_path_factory):
    from llamavid.train.recipe import recipe_from_dict
    from llamavid.train.run import run_recipe

    out = tmp_path_factory.mktemp("lora-reference")
    figures = run_recipe(recipe_from_dict(lora_recipe(toy_data, out, lora_base, gradient_accumulation_steps=2)))
    return out, figures


def assert_same_adapter_folder(out: Path, reference) -> None:
    """Stage 2's adapter folder (visual weights and LoRA weights) and loss curve as in the one-process run."""
    from safetensors.torch import load_file

    reference_out, reference_figures = reference
    figures = stage_figures(out, "stage2")
    assert figures["losses"] == pytest.approx(reference_figures["stage2"]["losses"], rel=1e-5)
    for name in ("visual.safetensors", "llm_adapter/adapter_model.safetensors"):
        mine, theirs = load_file(str(out / "stage2" / name)), load_file(str(reference_out / "stage2" / name))
        assert sorted(mine) == sorted(theirs) and theirs, name
        for key, tensor in theirs.items():  # whole tensors: ZeRO-3 holds shards while training
            assert mine[key].shape == tensor.shape, key
            torch.testing.assert_close(mine[key], tensor, rtol=0, atol=1e-5, msg=key)
    assert any("lora_B" in key and tensor.abs().sum() > 0 for key, tensor in theirs.items())  # it trained


@pytest.mark.parametrize("launcher", ["ddp", "zero3"])
def test_unmerged_lora_is_saved_once_from_the_gathered_weights(toy_data, lora_base, lora_reference, tmp_path,
                                                                launcher):
    from llamavid.inference.loading import load_model

    if launcher == "zero3":
        pytest.importorskip("deepspeed")
        config = str(ROOT / "recipes" / "deepspeed" / "zero3.json")
        recipe = lora_recipe(toy_data, tmp_path / "run", lora_base, deepspeed=config)
        launch("deepspeed", recipe, tmp_path, "--only", "stage1")
        # a launch of its own: the LoRA starts as in the one-process run only because each stage seeds it
        launch("deepspeed", recipe, tmp_path, "--only", "stage2")
    else:
        launch("torchrun", lora_recipe(toy_data, tmp_path / "run", lora_base), tmp_path)  # DDP
    assert_same_adapter_folder(tmp_path / "run", lora_reference)
    model, _ = load_model(tmp_path / "run" / "stage2", device="cpu", dtype="float32")  # on the base LLM
    assert model.config.base_llm == str(lora_base)
