#!/usr/bin/env bash
# Proves the floors pyproject.toml declares for transformers and PyAV: a fresh virtual environment at DIR with
# both pinned to their lowest allowed version, then the tests that exercise those two libraries.
# Usage: scripts/lowest_deps_check.sh DIR
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

python -m venv "$dir"
py="$dir/bin/python"
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
"$py" -m pip install --quiet torch==2.13.0
printf '%s\n' $constraints > "$dir/lowest-constraints.txt"
"$py" -m pip install --quiet -c "$dir/lowest-constraints.txt" -e ".[dev]"
installed=$("$py" -c 'import av, transformers; print(f"transformers=={transformers.__version__} av=={av.__version__}")')
if [ "$installed" != "$(echo $constraints)" ]; then
    echo "installed $installed, not the floors $(echo $constraints)" >&2
    exit 1
fi
echo "installed $installed in $((SECONDS - start)) s"

# Media decoding (PyAV), configs, loading, modeling, generation and conversion (transformers).
"$py" -m pytest -q -p no:cacheprovider \
    tests/media tests/test_config.py tests/test_loading.py tests/test_modeling.py tests/test_parity.py \
    tests/test_processing.py tests/test_convert.py tests/test_generation.py
echo "lowest-dependency check took $((SECONDS - start)) s"
