"""The one exception type for mistakes a user can cause (bad file, bad flag, bad input).

CLIs catch it and print one line; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A user-caused error; its message is a complete one-line explanation."""


def run_cli(main, argv=None) -> int:
    """Run a subcommand's `main(argv)`; a UserError becomes one stderr line and exit code 2; a
    closed stdout (piped into `head`) ends quietly with exit code 141.

    Every CLI module ends with `sys.exit(run_cli(main))` so `python -m part.module` behaves
    like `scratchpad ...`.
    """
    import os
    import sys

    try:
        return int(main(sys.argv[1:] if argv is None else argv) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not _kernels_unavailable(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`scratchpad generate ... | head`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return BROKEN_PIPE_EXIT


def _kernels_unavailable(e: Exception) -> bool:
    """kernels.KernelUnavailable (SCRATCHPAD_KERNELS=triton where triton cannot run) is a user
    error too; `kernels` imports nothing of scratchpad, so it has its own class, looked up here only
    if kernels was imported at all."""
    import sys

    kernels = sys.modules.get("kernels")
    return kernels is not None and isinstance(e, kernels.KernelUnavailable)


BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader closed
