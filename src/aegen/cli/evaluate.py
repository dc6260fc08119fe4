"""`aegen evaluate RUN_DIR`: score a run and print one table; every flag is an EvalSettings
field (settings/evaluate.py), its samplers named from their registry."""

from __future__ import annotations

import argparse

from aegen.cli.arguments import add_eval_flag, run_argument, sampler_names, words

SUMMARY = "score reconstructions, likelihoods and samples (writes RUN_DIR/scores.json)"
DESCRIPTION = (
    "Score a run on its data set's test split (for your own images: the run's held-out "
    "images): reconstruction error, "
    "importance-sampled NLL (VAEs), and FD-aegen, precision, recall and label "
    "coverage of each sampler's samples, judged by aegen's own classifier."
)


def add_arguments(command: argparse.ArgumentParser) -> None:
    from aegen.settings.evaluate import SETTINGS
    from aegen.trained import STANDARD_SAMPLERS

    run_argument(command)
    samplers = SETTINGS["samplers"].metadata  # named from the registry, the defaults too
    samplers_help = (
        f"{sampler_names()}: {samplers['meaning']} "
        f"(default: {samplers['unset']}: {words(STANDARD_SAMPLERS, 'and')})"
    )
    for name in SETTINGS:
        add_eval_flag(command, name, help_text=samplers_help if name == "samplers" else None)


def run(args: argparse.Namespace) -> None:
    from aegen.runs.folder import SCORES
    from aegen.scoring.evaluate import evaluate
    from aegen.settings.evaluate import SETTINGS, EvalSettings
    from aegen.views.score_table import run_table

    metrics = evaluate(args.run, EvalSettings(**{name: getattr(args, name) for name in SETTINGS}))
    print(run_table(metrics), end="")
    print(args.run / SCORES)
