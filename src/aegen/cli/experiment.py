"""`aegen experiment NAME`: a documented experiment end to end, its name from the registry
(aegen.experiments.EXPERIMENTS) and its defaults from its own module."""

from __future__ import annotations

import argparse
from pathlib import Path

from aegen.cli.arguments import add_eval_flag, positive_int, words

SUMMARY = "run a documented experiment end to end"
DESCRIPTION = (
    "Train, measure and compare models on one data set; tables, pictures, hardware and "
    "time go into --out."
)


def add_arguments(command: argparse.ArgumentParser) -> None:
    from aegen.experiments import EXPERIMENTS, can_ae_generate, lossy_compression
    from aegen.settings.evaluate import MOST_NLL_K, MOST_SAMPLES, SETTINGS

    command.add_argument(
        "name",
        choices=EXPERIMENTS,
        help="can-ae-generate: can an autoencoder generate? ae, conv-ae and vae with every "
        "sampler; lossy-compression: rate and distortion against PCA and JPEG, in-domain and on "
        "the other data set, and how well reconstruction error and likelihood spot foreign images",
    )
    datasets = list(can_ae_generate.EPOCHS)
    command.add_argument(
        "--dataset",
        default=datasets[0],
        help=f"{words([f'{datasets[0]} (default)', *datasets[1:]])}",
    )
    add_eval_flag(command, "data_root")
    per_experiment = "; ".join(
        f"{name} " + ", ".join(f"{epochs} on {data}" for data, epochs in module.EPOCHS.items())
        for name, module in (
            ("can-ae-generate", can_ae_generate),
            ("lossy-compression", lossy_compression),
        )
    )
    command.add_argument(
        "--epochs", type=positive_int, help=f"epochs per model (default: {per_experiment})"
    )
    add_eval_flag(
        command,
        "n_samples",
        help_text=f"{SETTINGS['n_samples'].metadata['meaning']} by can-ae-generate "
        f"(default {MOST_SAMPLES})",
    )
    add_eval_flag(
        command,
        "nll_k",
        help_text=f"{SETTINGS['nll_k'].metadata['meaning']} (default: can-ae-generate "
        f"{MOST_NLL_K}, lossy-compression {lossy_compression.NLL_K})",
    )
    command.add_argument("--out", type=Path, metavar="DIR", help="default experiments/NAME-DATASET")


def run(args: argparse.Namespace) -> None:
    out = args.out or Path("experiments") / f"{args.name}-{args.dataset}"
    if args.name == "lossy-compression":
        from aegen.experiments.lossy_compression import lossy_compression

        lossy_compression(args.dataset, out, args.data_root, args.epochs, nll_k=args.nll_k)
        return
    from aegen.experiments.can_ae_generate import can_ae_generate

    counts = {"n_samples": args.n_samples, "nll_k": args.nll_k}
    given = {name: value for name, value in counts.items() if value is not None}
    can_ae_generate(args.dataset, out, args.data_root, args.epochs, **given)
