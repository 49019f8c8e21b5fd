"""The experiments behind `scratchpad eval ...`: each module <name>.py runs one experiment
(`run(...) -> Result`: no argument parsing, no report writing) and its <name>_cli.py is the thin
command on top: parse the flags, call run, render the Markdown, JSON and plots."""
