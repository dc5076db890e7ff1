#!/usr/bin/env bash
# One command for the U-Net benchmark: set up benchmarks/.venv-ref if needed, then run
# benchmarks/unet_vs_imagen_pytorch.py in it (arguments are passed through), which updates
# docs/benchmarks.md.
#
#   bash benchmarks/run_unet_benchmark.sh              # full run (~10 min on 2 CPU cores)
#   bash benchmarks/run_unet_benchmark.sh --quick      # smoke run of the harness
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_reference_env.sh"
exec "$here/.venv-ref/bin/python" "$here/unet_vs_imagen_pytorch.py" "$@"
