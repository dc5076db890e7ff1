#!/usr/bin/env bash
# One command for the cascade sampling benchmark (issue 8): set up benchmarks/.venv-ref if
# needed, then run benchmarks/cascade_sampling.py in it (arguments are passed through),
# which times the full shapes cascade (32 px base -> 128 px SR) per image, ours at equal
# ShapeBench alignment (fast sampler, step count from docs/results/part5.json) and at DDPM
# 1000, against an imagen-pytorch cascade of the same size at its default sampling, and
# updates docs/benchmarks.md.
#
#   bash benchmarks/run_cascade_benchmark.sh                 # full run (~15 min, loaded 2-core CPU)
#   bash benchmarks/run_cascade_benchmark.sh --quick         # smoke run of the harness
#   bash benchmarks/run_cascade_benchmark.sh --skip-ours-ddpm --json-out /tmp/raw.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup_reference_env.sh"
exec "$here/.venv-ref/bin/python" "$here/cascade_sampling.py" "$@"
