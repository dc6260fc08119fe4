"""`aegen encode RUN_DIR`: the codes and labels of held-out images, as an .npz or .pt file."""

from __future__ import annotations

import argparse

from aegen.cli.arguments import held_out_arguments, writer_of

SUMMARY = "write the codes and labels of held-out images"
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    held_out_arguments(command, "an .npz or .pt file (default RUN_DIR/codes-SPLIT.npz)")


def run(args: argparse.Namespace) -> None:
    from aegen.export.files import CODE_FORMATS, check_suffix, save_codes
    from aegen.training.run import load

    trained = load(args.run, args.data_root, args.weights)
    out = args.out or args.run / f"codes-{args.split}.npz"
    check_suffix(out, CODE_FORMATS)
    images = trained.split(args.split)
    codes = trained.encode(images.images, images.labels)
    with writer_of(args.run, out):
        save_codes(out, codes, images.labels)
    print(out)
