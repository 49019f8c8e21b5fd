"""Generation engine: prefill, per-byte decode with commit vs transient trunk steps, sampling."""
from infer.engine import Engine, Generation

__all__ = ["Engine", "Generation"]
