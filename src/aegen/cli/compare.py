"""`aegen compare RUN_DIR...`: tabulate and picture evaluated runs."""

from __future__ import annotations

import argparse
from pathlib import Path

SUMMARY = "tabulate and picture evaluated runs"
DESCRIPTION = "Write comparison.md, comparison.json and comparison.png of evaluated runs."


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="run folders `aegen evaluate` has scored",
    )
    command.add_argument(
        "--out",
        type=Path,
        default=Path("comparison"),
        metavar="DIR",
        help="folder for the table and picture (default comparison)",
    )


def run(args: argparse.Namespace) -> None:
    from aegen.views.comparison import compare_runs, terminal_table

    print(terminal_table(*compare_runs(args.runs, args.out)), end="")
    print(f"written: {args.out}/comparison.md, comparison.json, comparison.png")
