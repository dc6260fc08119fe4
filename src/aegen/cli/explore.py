"""`aegen explore RUN_DIR`: a local page to move through a run's latent space live."""

from __future__ import annotations

import argparse

from aegen.cli.arguments import add_eval_flag, run_argument, whole_number

SUMMARY = "serve a local page to move through a run's latent space live"
DESCRIPTION = ""


def port(text: str) -> int:
    value = whole_number(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {value}")
    return value


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    command.add_argument("--port", type=port, default=8765, help="default 8765; 0 picks a free one")
    command.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    add_eval_flag(command, "data_root")


def run(args: argparse.Namespace) -> None:
    from aegen.views.explore import serve

    serve(args.run, args.host, args.port, args.data_root)
