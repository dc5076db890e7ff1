#!/usr/bin/env bash
# One command for the U-Net benchmark: set up benchmarks/.venv-ref if needed, then run
# benchmarks/unet_vs_imagen_pytorch.py in it (arguments are passed through), which measures
# openimagen and imagen-pytorch side by side (base U-Net 64x64 and 32x32, SR U-Net 64x64
# crops; training step, forward, peak memory, FLOP/s; one torch thread) and updates
# docs/benchmarks.md.
#
#   bash benchmarks/run_unet_benchmark.sh              # full run (~9 min on a loaded 2-core CPU)
#   bash benchmarks/run_unet_benchmark.sh --quick      # smoke run of the harness (~2 min)
#   bash benchmarks/run_unet_benchmark.sh --precision bf16   # both models under bf16 autocast;
#                                                       # its own section of docs/benchmarks.md
#   bash benchmarks/run_unet_benchmark.sh --cases base-64 --json-out /tmp/raw.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_reference_env.sh"
exec "$here/.venv-ref/bin/python" "$here/unet_vs_imagen_pytorch.py" "$@"
