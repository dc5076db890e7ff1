#!/usr/bin/env bash
# Create benchmarks/.venv-ref: torch 2.13.0 first, then openimagen (editable, from this
# checkout), then imagen-pytorch from PyPI (its requirements from requirements-ref.txt, the
# package with --no-deps), every step constrained to torch==2.13.0 so that nothing can pull
# in another torch.
#
#   bash benchmarks/setup_reference_env.sh            # create or update
#   PYTHON=python3.11 bash benchmarks/setup_reference_env.sh
#
# Idempotent: a stamp file records the hash of the inputs; a second run with unchanged
# inputs returns at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${REF_VENV:-$here/.venv-ref}"  # REF_VENV: another place, e.g. to test a fresh setup
constraints="$here/constraints-ref.txt"
requirements="$here/requirements-ref.txt"
stamp="$venv/.openimagen-ref-stamp"
python="${PYTHON:-python3}"
imagen_version="2.1.0"

inputs_hash="$(cat "$constraints" "$requirements" "$root/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs_hash" ]]; then
    echo "reference env up to date: $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

# 1. torch first, exactly the version the project is developed against.
"${pip[@]}" -c "$constraints" "torch==2.13.0"
# 2. openimagen itself (editable, so the benchmark measures this checkout's src/).
"${pip[@]}" -c "$constraints" -e "$root"
# 3. the reference: its requirements (less torchvision, see requirements-ref.txt), then the
#    package itself with --no-deps, so nothing can move the torch pin.
"${pip[@]}" -c "$constraints" -r "$requirements"
"${pip[@]}" -c "$constraints" --no-deps "imagen-pytorch==$imagen_version"

# An env made by an older version of this script may still hold a broken torchvision.
"$venv/bin/python" -m pip uninstall -y -q torchvision 2>/dev/null || true

# Fail loudly if anything moved torch after all.
"$venv/bin/python" - <<'PY'
import sys
from importlib.metadata import version

torch_version = version("torch").split("+")[0]
if torch_version != "2.13.0":
    sys.exit(f"reference env has torch {version('torch')}, expected 2.13.0")
print("torch", version("torch"), "| imagen-pytorch", version("imagen-pytorch"))
try:
    version("torchvision")
except Exception:
    pass
else:
    sys.exit("torchvision is installed in the reference env; see benchmarks/requirements-ref.txt")
PY

echo "$inputs_hash" > "$stamp"
echo "reference env ready: $venv"
