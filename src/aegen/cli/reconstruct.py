"""`aegen reconstruct RUN_DIR`: held-out images and their reconstructions, as a picture or a
file of the rebuilt images."""

from __future__ import annotations

import argparse
from pathlib import Path

from aegen.cli.arguments import add_eval_flag, positive_int, run_argument

SUMMARY = "rebuild held-out images through the code"
DESCRIPTION = ""
SPLITS = ("val", "test", "train")


def split_argument(command: argparse.ArgumentParser) -> None:
    """--split, as `reconstruct` and `encode` take it."""
    command.add_argument(
        "--split",
        choices=SPLITS,
        default="val",
        help="which images: the run's validation split (default), the "
        "data set's test set, or the training split",
    )


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    split_argument(command)
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .png, .npy or .pt file (default RUN_DIR/reconstructions-SPLIT.png)",
    )
    add_eval_flag(command, "weights")
    add_eval_flag(command, "data_root")
    command.add_argument("-n", type=positive_int, default=24, help="how many images (default 24)")


def run(args: argparse.Namespace) -> None:
    from aegen.data.pixels import unit_images
    from aegen.export.files import IMAGE_FORMATS, check_suffix, save_images
    from aegen.training.run import load
    from aegen.views.figures import save_reconstructions

    trained = load(args.run, args.data_root, args.weights)
    out = args.out or args.run / f"reconstructions-{args.split}.png"
    check_suffix(out, IMAGE_FORMATS)
    images = trained.split(args.split)
    originals = images.images[: args.n]
    rebuilt = trained.reconstruct(originals, images.labels[: args.n])
    if out.suffix.lower() == ".png":
        save_reconstructions(out, unit_images(originals), rebuilt)
    else:
        save_images(out, rebuilt)
    print(out)
