"""lm-evaluation-harness tasks that ship with the project (pass this folder as --include-path)."""
