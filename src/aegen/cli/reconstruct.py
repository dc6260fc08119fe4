"""`aegen reconstruct RUN_DIR`: held-out images and their reconstructions, as a picture or a
file of the rebuilt images."""

from __future__ import annotations

import argparse

from aegen.cli.arguments import held_out_arguments, positive_int, writer_of

SUMMARY = "rebuild held-out images through the code"
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    held_out_arguments(
        command, "a .png, .npy or .pt file (default RUN_DIR/reconstructions-SPLIT.png)"
    )
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
    with writer_of(args.run, out):
        if out.suffix.lower() == ".png":
            save_reconstructions(out, unit_images(originals), rebuilt)
        else:
            save_images(out, rebuilt)
    print(out)
