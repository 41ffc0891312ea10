#!/usr/bin/env bash
# Usage: bash scripts/lmms_eval_env.sh DIR
#
# Makes a virtual environment at DIR with lmms-eval 0.7.3 and this checkout of llamavid (editable), working on a
# CPU-only machine; CI builds its lmms-eval test environment with exactly this script.
#
# Why not `pip install lmms-eval`: its dependency list pulls PyPI's torchvision, a CUDA build that replaces the
# CPU torch (unpinned) or, pinned beside it, fails to load and takes `import transformers` models down with it;
# it caps PyAV below 16; and it drags in a hundred packages (wandb, opencv, judges) that local tasks never use.
# So lmms-eval goes in without its dependencies, followed by the modules its evaluator imports. filelock 4 breaks
# lmms-eval's `simple_evaluate` (it imports a private filelock module), hence the cap.
#
# On a CUDA machine with the torch you want already installed: pip install lmms-eval==0.7.3 "filelock<4" and
# `pip install -e .` (or `pip install llamavid`); built-in hub tasks also need their own extras (see lmms-eval).
set -euo pipefail
DIR=${1:?usage: bash scripts/lmms_eval_env.sh DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv "$DIR"
PY="$DIR/bin/python"
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
"$PY" -m pip install --quiet torch==2.13.0
CONSTRAINTS="$DIR/llamavid-constraints.txt"
printf 'torch==2.13.0\nfilelock<4\n' > "$CONSTRAINTS"
"$PY" -m pip install --quiet -c "$CONSTRAINTS" -e "$ROOT" pytest
"$PY" -m pip install --quiet --no-deps lmms-eval==0.7.3
"$PY" -m pip install --quiet -c "$CONSTRAINTS" loguru pytz sacrebleu evaluate tenacity pytablewriter "filelock<4"
# A torchvision here would be PyPI's CUDA build: refuse the environment rather than let transformers break later.
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
    "$PY" -m pip uninstall --quiet -y torchvision
fi
"$PY" - <<'PY'
import lmms_eval.evaluator  # noqa: F401  (imports transformers' pipelines: fails if a broken torchvision crept in)
from importlib.metadata import entry_points

import llamavid

names = {e.name for e in entry_points(group="lmms_eval.models")}
assert "llamavid" in names, f"llamavid's lmms_eval.models entry point is missing (found {sorted(names)})"
print(f"lmms-eval environment ready: llamavid {llamavid.__version__ if hasattr(llamavid, '__version__') else ''}")
PY
