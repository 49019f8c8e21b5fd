#!/bin/sh
# The study's variants at 10 minutes of training each (CPU, one pinned core, one thread).
# Trains 8 presets and the BPE baseline one after another (~95 min), then scores and audits them.
# A finished run under $RUNS/runs/<preset> is reused, so a second call only re-renders the report.
set -e
DATA=${DATA:-/work/data/text}   # scratchpad data build text --out /work/data/text
RUNS=${RUNS:-/work/runs/variants-10m}
OMP_NUM_THREADS=1 taskset -c 1 scratchpad eval variants --data "$DATA" --time-budget 10m --out "$RUNS" --threads 1
cp "$RUNS"/variants.md "$RUNS"/variants.json "$RUNS"/variants.png "$(dirname "$0")"/
