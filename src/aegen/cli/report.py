"""`aegen report RUN_DIR...`: one self-contained HTML page of runs."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from aegen.cli.arguments import writer_of, writes_into

SUMMARY = "write one self-contained HTML page of runs (several: side by side)"
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders to show"
    )
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="HTML file (default RUN_DIR/report.html, or report.html for several)",
    )


def run(args: argparse.Namespace) -> None:
    from aegen.export.files import check_suffix
    from aegen.views.report import write_report

    out = args.out or (args.runs[0] / "report.html" if len(args.runs) == 1 else Path("report.html"))
    check_suffix(out, (".html", ".htm"))
    into = [run for run in args.runs if run.is_dir() and writes_into(run, out)]
    with writer_of(into[0], out) if into else contextlib.nullcontext():
        print(write_report(args.runs, out))
