#!/usr/bin/env bash
# Build the bundled model directory (src/openimagen/assets/shapes-cascade) from a base-stage
# checkpoint of runs/bundled-base-32 and the kept SR stage (docs/results.md):
#   bash benchmarks/ship_bundled.sh STEP [RUN_DIR]
# The SR stage comes from the previous bundled model at commit 795025c (its run directory
# is not kept; its training record is reconstructed from configs/bundled-sr-32-128.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=$(printf "%08d" "$1")
RUN=${2:-runs/bundled-base-32}
PY=${PY:-.venv/bin/python}
OUT=src/openimagen/assets/shapes-cascade
if [ ! -f runs/previous-bundled/cascade.json ]; then
  mkdir -p runs/previous-bundled
  git archive 795025c src/openimagen/assets/shapes-cascade | tar -x -C runs/previous-bundled --strip-components=4
fi
rm -rf runs/ship-base
.venv/bin/openimagen export "$RUN/checkpoints/step_$STEP" runs/ship-base \
    --sampler dpmpp_2m --steps 25 --guidance "${GUIDANCE:-3}" --threshold dynamic
"$PY" benchmarks/assemble_cascade.py "$OUT" runs/ship-base:0 runs/previous-bundled:1 \
    --model-id shapes-cascade --fp16 --record 1=configs/bundled-sr-32-128.toml:3000
du -sh "$OUT"
