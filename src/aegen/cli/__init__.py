"""The `aegen` command: parses arguments, calls the library, prints. Errors a user can cause
print one line and exit with status 2.

Each command is one module of this package, its arguments (`add_arguments`) beside its handler
(`run`); arguments.py holds what several share. A command's options are built only when it
runs (or for its --help), and they and its handler import what they need inside, so that
`aegen --help` loads neither torch nor any registry and answers at once.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn

from aegen.cli import (
    compare,
    encode,
    evaluate,
    experiment,
    explore,
    export,
    models,
    pictures,
    reconstruct,
    report,
    sample,
    score,
    train,
)
from aegen.cli.arguments import OneLineParser
from aegen.cli.train import model_optimizer_defaults, setting_flag
from aegen.errors import AegenError, Interrupted
from aegen.version import __version__

COMMANDS: dict[str, ModuleType] = {
    "train": train,
    "sample": sample,
    "reconstruct": reconstruct,
    "encode": encode,
    "pictures": pictures,
    "evaluate": evaluate,
    "score": score,
    "export": export,
    "compare": compare,
    "experiment": experiment,
    "report": report,
    "explore": explore,
    "models": models,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. command: build only that command's options, the others by name
    and summary (main passes the one it runs; "" builds none, for `aegen --help`)."""
    parser = OneLineParser(
        prog="aegen",
        description="Train autoencoders, rebuild images and generate new ones; "
        "measure how good the generated images are.",
    )
    parser.add_argument("--version", action="version", version=f"aegen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        summary = module.SUMMARY
        sub = commands.add_parser(
            name,
            help=summary,
            description=module.DESCRIPTION or summary[0].upper() + summary[1:] + ".",
        )
        if command is None or command == name:
            module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    stop_printing = _print_progress_lines(quiet=getattr(args, "quiet", False))
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops like Ctrl-C does
    try:
        COMMANDS[args.command].run(args)
    except Interrupted as exc:  # training stopped; it says what the run folder keeps
        print(f"aegen: {exc}", file=sys.stderr)
        return 143 if _terminated else 130
    except AegenError as exc:
        print(f"aegen: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`aegen models | head`): nothing to say
        return 0
    except OSError as exc:  # a full disk, a read-only folder: one line, the files stay as they were
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"aegen: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aegen: interrupted", file=sys.stderr)
        return 143 if _terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_printing()
    return 0


STOPPED_WHILE_STARTING = "aegen: interrupted while starting; nothing was written"


def run() -> NoReturn:
    """The `aegen` command and `python -m aegen`: main(), then exit.

    The interpreter's exit garbage-collects every object torch's import made, 0.25-0.4 s of each
    command on the 2-core machine (bench/README.md); frozen objects are skipped, and the process
    ends next, so keeping them costs nothing. (Not in main(), which tests call in-process.)"""
    signal.signal(signal.SIGTERM, _terminate)  # from the start: torch's import takes seconds
    try:
        status = main()
    except KeyboardInterrupt:  # while starting, before a command runs: nothing is written yet
        print(STOPPED_WHILE_STARTING, file=sys.stderr)
        status = 143 if _terminated else 130
    gc.freeze()
    sys.exit(status)


def _print_progress_lines(quiet: bool) -> Callable[[], None]:
    """Print the library's progress lines (the "aegen" logger) to the current stdout, as the
    CLI always has; --quiet keeps only warnings. Returns the function that stops it."""
    import logging

    class PrintHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(self.format(record), flush=True)

    logger = logging.getLogger("aegen")
    handler = PrintHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return lambda: logger.removeHandler(handler)


_terminated = False


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C (temporary files removed, one line), then exit 143."""
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


__all__ = ["COMMANDS", "build_parser", "main", "model_optimizer_defaults", "run", "setting_flag"]
