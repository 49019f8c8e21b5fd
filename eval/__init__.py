"""The layer on top of the model, the trainer and the engine: the `scratchpad` dispatcher (cli.py),
a small evaluation library (windows, scoring, lag statistics, the causality audit, the engine check,
compressors, reports), the experiments (eval/experiments/) and the benchmarks (eval/bench/)."""
