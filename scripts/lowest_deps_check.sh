#!/usr/bin/env bash
# Proves the floors pyproject.toml declares for transformers and PyAV: a fresh virtual environment at DIR with
# both pinned to their lowest allowed version, then the tests that exercise those two libraries.
# Usage: scripts/lowest_deps_check.sh DIR  (DIR is emptied first; needs Python 3.11+ for tomllib)
set -euo pipefail
dir=${1:?usage: scripts/lowest_deps_check.sh DIR (the virtual environment to create)}
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS

# The floors come from pyproject.toml itself, so the check cannot drift from what is declared.
constraints=$(python - <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    dependencies = tomllib.load(f)["project"]["dependencies"]
for name in ("transformers", "av"):
    spec = next((d for d in dependencies if re.match(rf"{name}\s*(?:[<>=!~;\[]|$)", d)), None)
    floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", spec or "")
    if floor is None:
        raise SystemExit(f"pyproject.toml: no '>=' floor for {name} in [project].dependencies ({spec!r})")
    print(f"{name}=={floor.group(1)}")
PY
)
echo "lowest versions: $(echo $constraints)"

python -m venv --clear "$dir"
py="$dir/bin/python"
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
"$py" -m pip install --quiet torch==2.13.0
printf '%s\n' $constraints > "$dir/lowest-constraints.txt"
# `train` brings peft, for the two tests of code that hands a KV cache to transformers outside generation.
"$py" -m pip install --quiet -c "$dir/lowest-constraints.txt" -e ".[dev,train]"
"$py" - "$dir/lowest-constraints.txt" <<'PY'
import sys
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.version import Version

for line in open(sys.argv[1]).read().split():
    pin = Requirement(line)
    installed = version(pin.name)
    if Version(installed) not in pin.specifier:
        raise SystemExit(f"installed {pin.name} {installed}, not the floor {pin.specifier}")
    print(f"installed {pin.name} {installed}")
PY
echo "environment ready in $((SECONDS - start)) s"

# Media decoding (PyAV); configs, loading, modeling with generation, processing, conversion, the LoRA routing
# and the shared-prefix training forward (transformers).
"$py" -m pytest -q -p no:cacheprovider \
    tests/media tests/model/test_config.py tests/inference/test_loading.py tests/model/test_modeling.py \
    tests/test_parity.py tests/model/test_processing.py tests/model/test_convert.py \
    tests/inference/test_adapter_model.py \
    tests/train/test_stages_run.py::test_shared_prefix_gives_the_same_losses
echo "lowest-dependency check took $((SECONDS - start)) s"
