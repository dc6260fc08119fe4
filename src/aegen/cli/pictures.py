"""`aegen pictures RUN_DIR`: draw a run's pictures again."""

from __future__ import annotations

import argparse

from aegen.cli.arguments import add_eval_flag, folder_writer, run_argument

SUMMARY = (
    "(re)draw a run's pictures: reconstructions, samples, latent "
    "scatter, interpolations, manifold (2-d codes), loss curves"
)
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    add_eval_flag(command, "data_root")


def run(args: argparse.Namespace) -> None:
    from aegen.runs.folder import read_history
    from aegen.training.run import load
    from aegen.views.run_pictures import write_run_pictures

    trained = load(args.run, args.data_root)
    with folder_writer(args.run):
        write_run_pictures(trained, read_history(args.run))
    print(args.run)
