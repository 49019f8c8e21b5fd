#!/usr/bin/env bash
# Regenerates every report in this folder for the packaged default model.
#   bash eval/reports/default/regenerate.sh [DATA_ROOT] [THREADS]
# DATA_ROOT holds the corpora of `scratchpad data build text|code` (default /work/data: text/, code/).
# Run on a quiet machine: the decode benchmarks time the CPU. The fine-tuning reports
# (code/ with a fine-tuned model, finetune-repo/) take extra training; see the README.
set -euo pipefail
DATA=${1:-/work/data}
THREADS=${2:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=scratchpad/default_model
EVAL=(--model "$MODEL" --max-bytes 65536 --threads "$THREADS")

scratchpad eval causality --model "$MODEL" > "$HERE/causality.txt"
for corpus in text code; do
    scratchpad eval sweep "${EVAL[@]}" --data "$DATA/$corpus" --out "$HERE/sweep-$corpus"
    scratchpad eval lag "${EVAL[@]}" --data "$DATA/$corpus" --thresholds 0,1.5,3,inf --out "$HERE/lag-$corpus"
    for tau in 1.5 inf; do
        scratchpad eval bpb "${EVAL[@]}" --data "$DATA/$corpus" --threshold "$tau" --compare-compressors \
            --out "$HERE/compressors/$corpus-tau$tau"
    done
done
scratchpad eval triggers "${EVAL[@]}" --data "$DATA/text" --out "$HERE/triggers"
scratchpad eval triggers "${EVAL[@]}" --data "$DATA/code" --out "$HERE/triggers-code"
scratchpad eval code --model "$MODEL" --data "$DATA/code" --threshold 1.5 --threads "$THREADS" --out "$HERE/code"
for tau in 1.5 3 inf; do
    taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold "$tau" --threads 1 \
        > "$HERE/bench_generate_cpu_tau$tau.txt"
done
for tau in 1.5 3 inf; do
    taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold "$tau" --threads 1 --compile \
        > "$HERE/bench_generate_cpu_tau${tau}_compiled.txt"
done
# the stride trigger (every k-th byte of a patch, tau = inf): tau = 1.5's BPB at a quarter of its scratchpads
taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold inf --scratch-every 4 --threads 1 \
    > "$HERE/bench_generate_cpu_every4.txt"
for k in 4 6; do
    taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold inf --scratch-every "$k" --threads 1 --compile \
        > "$HERE/bench_generate_cpu_every${k}_compiled.txt"
done
# longer generations: 2,048 bytes per row
taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold 1.5 --threads 1 --compile --batch-sizes 1 \
    --max-bytes 2048 --repeats 2 > "$HERE/bench_generate_cpu_tau1.5_compiled_2048.txt"
taskset -c 0 scratchpad bench generate --model "$MODEL" --threshold inf --scratch-every 4 --threads 1 --compile \
    --batch-sizes 1 --max-bytes 2048 --repeats 2 > "$HERE/bench_generate_cpu_every4_compiled_2048.txt"
taskset -c 0 scratchpad bench serve --clients 1,4,16 --seconds 20 --max-batch 16 --max-tokens 128 --threads 1 \
    --out "$HERE/serve-load-cpu"
taskset -c 0 scratchpad bench serve --clients 1,4,16 --seconds 20 --max-batch 16 --max-tokens 128 --threads 1 \
    --threshold inf --scratch-every 4 --out "$HERE/serve-load-cpu-every4"
