"""Training: byte corpora and their builders (train/corpus/), the trainer (single process or
torchrun DDP, exact resume, budgets in steps, time or FLOPs), fine-tuning, the `scratchpad train`
and `scratchpad data` commands."""
