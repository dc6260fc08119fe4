"""`aegen sample RUN_DIR`: decode codes drawn by a latent sampler into new images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aegen.cli.arguments import (
    add_eval_flag,
    folder_writer,
    positive_int,
    run_argument,
    sampler_names,
    whole_number,
    writer_of,
)

SUMMARY = "generate new images from a trained run"
DESCRIPTION = "Decode codes drawn by a latent sampler into new images."


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    command.add_argument("-n", type=positive_int, default=64, help="how many images (default 64)")
    add_eval_flag(command, "seed")
    command.add_argument(
        "--sampler",
        help=f"{sampler_names()}; the fitted ones are fitted to the training codes once and "
        "saved in the run (default: prior for a model trained to match it (VAEs, wae, aae) or "
        "with a learned one (vamp's mixture, vq-vae's PixelCNN, ldm's flow), gmm for rae, "
        "gaussian for a plain autoencoder)",
    )
    command.add_argument(
        "--label",
        type=whole_number,
        help="the class to generate (conditional models, e.g. cvae, and ldm on labelled "
        "data); default: cvae draws classes uniformly, ldm as often as the training labels",
    )
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .png grid, .npy or .pt file (default RUN_DIR/samples-SAMPLER-seedN.png)",
    )
    add_eval_flag(command, "weights")
    add_eval_flag(command, "data_root")


def run(args: argparse.Namespace) -> None:
    from aegen.export.files import check_image_output, save_images
    from aegen.training.run import load

    trained = load(args.run, args.data_root, args.weights)
    sampler = args.sampler or trained.default_sampler
    label = "" if args.label is None else f"-label{args.label}"
    out = args.out or args.run / f"samples-{sampler}{label}-seed{args.seed}.png"
    check_image_output(out, args.n)
    # A sampler fitted on the way is kept in the run folder: then, or when the picture lands
    # there, the folder's shared lock; a fitted (or fit-free) sampler drawing elsewhere needs none.
    lock = folder_writer(args.run) if _fits(trained, sampler) else writer_of(args.run, out)
    with lock:
        save_images(out, trained.sample(args.n, args.seed, sampler, args.label))
    print(out)


def _fits(trained: Any, sampler: str) -> bool:
    """Whether drawing from the sampler first fits it (and saves the fit into the run)."""
    from aegen.errors import ConfigError

    try:
        trained.sampler(sampler, fit=False)
    except ConfigError:
        return True  # to be fitted; or a sampler the model refuses, which sample() then says
    return False
