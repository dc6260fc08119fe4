"""`aegen encode RUN_DIR`: the codes and labels of held-out images, as an .npz or .pt file."""

from __future__ import annotations

import argparse
from pathlib import Path

from aegen.cli.arguments import add_eval_flag, run_argument
from aegen.cli.reconstruct import split_argument

SUMMARY = "write the codes and labels of held-out images"
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    split_argument(command)
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="an .npz or .pt file (default RUN_DIR/codes-SPLIT.npz)",
    )
    add_eval_flag(command, "weights")
    add_eval_flag(command, "data_root")


def run(args: argparse.Namespace) -> None:
    from aegen.export.files import CODE_FORMATS, check_suffix, save_codes
    from aegen.training.run import load

    trained = load(args.run, args.data_root, args.weights)
    out = args.out or args.run / f"codes-{args.split}.npz"
    check_suffix(out, CODE_FORMATS)
    images = trained.split(args.split)
    save_codes(out, trained.encode(images.images, images.labels), images.labels)
    print(out)
