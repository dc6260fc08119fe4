"""`aegen score RUN_DIR IMAGES`: each image's reconstruction error and, for VAEs, ELBO and NLL,
written as CSV or JSON (to tell images unlike the training data apart)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aegen.cli.arguments import add_eval_flag, run_argument, writer_of

SUMMARY = "write each image's reconstruction error and, for VAEs, ELBO and NLL (CSV or JSON)"
DESCRIPTION = (
    "Score every image of IMAGES one by one, to tell images unlike the run's training "
    "data apart (foreign-data detection): the reconstruction error (mean squared, pixels "
    "in [0, 1]) and, for VAEs, the ELBO and the importance-sampled NLL in nats. Images "
    "of another size or channel count are first brought to the run's."
)


def add_arguments(command: argparse.ArgumentParser) -> None:
    from aegen.settings.evaluate import MOST_NLL_K

    run_argument(command)
    command.add_argument(
        "images",
        metavar="IMAGES",
        help="a built-in data set's name (its test split: mnist, fashion-mnist, mnist-5k) "
        "or a folder of images or a .npy/.npz array (all its images)",
    )
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .csv or .json file (default RUN_DIR/scores-NAME.csv, NAME the data set's, "
        "folder's or array file's name)",
    )
    add_eval_flag(command, "nll_k", default=MOST_NLL_K)
    add_eval_flag(command, "seed")
    add_eval_flag(command, "weights")
    add_eval_flag(command, "data_root")


def run(args: argparse.Namespace) -> None:
    from aegen.scoring.per_image import (
        check_scores_output,
        image_names,
        images_to_score,
        per_image_scores,
        source_name,
        write_scores,
    )
    from aegen.training.run import load

    out = args.out or args.run / f"scores-{source_name(args.images)}.csv"
    check_scores_output(out)
    trained = load(args.run, args.data_root, args.weights)
    data = images_to_score(trained, args.images, args.data_root)
    scores = per_image_scores(trained, data, args.nll_k, args.seed)
    with writer_of(args.run, out):
        write_scores(out, scores, data.labels, image_names(args.images, data))
    print(out)
    means = ", ".join(f"{name} {values.mean().item():.6g}" for name, values in scores.items())
    print(f"scored {len(data)} images; means: {means}")
