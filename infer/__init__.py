"""Generation engine: runner (prefill, static decode step), scheduler (continuous batching over
fixed slots), sequences, device-side sampling, paged trunk KV, the `generate` and `serve` CLIs."""
from infer.engine import Engine
from infer.sequence import Generation, Request

__all__ = ["Engine", "Generation", "Request"]
