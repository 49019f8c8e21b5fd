"""Generation engine: runner (how the model's per-byte step runs: eager, compiled, CUDA graphs),
scheduler (continuous batching over fixed slots), sequences, device-side sampling, the `generate`
and `serve` CLIs. The decode math and state are the model's (scratchpad/decode.py, step.py)."""
from infer.engine import Engine
from infer.sequence import Generation, Request

__all__ = ["Engine", "Generation", "Request"]
