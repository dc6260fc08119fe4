"""`aegen train MODEL`: one flag per TrainSettings field (settings/train.py), with its meaning,
bounds and real default, and the model from the registry (aegen.models.PRESETS)."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegen.cli.arguments import words
from aegen.errors import ConfigError

if TYPE_CHECKING:
    import dataclasses

SUMMARY = "train a model and write its run folder"
DESCRIPTION = textwrap.fill(
    "Train a model preset and write its run folder (config.json, weights, "
    "checkpoint, history.jsonl, pictures). Settings come from their defaults, "
    "then --config FILE, then the flags given.",
    79,
)
EXAMPLES = """examples:
  aegen train vae                                  # the article's VAE, 10 epochs on mnist-5k
  aegen train ae --epochs 50 --out runs/my-ae      # the 3-d autoencoder, into a chosen folder
  aegen train vae --option latent_dim=2 --option kl_weight=4   # a 2-d beta-VAE
  aegen train conv-vae --dataset fashion-mnist --data-root ../shared/data --device cuda
  aegen train vae --epochs 20 --out runs/vae-mnist-5k --resume   # continue a run to epoch 20
  aegen train cvae --config settings.json --seed 3   # settings from a JSON file; flags win

Every model and its options: `aegen models`. Settings a resumed run may change: {resumable}."""


def add_arguments(command: argparse.ArgumentParser) -> None:
    """MODEL, --config, a flag per setting, then --out, --resume and --quiet; examples after."""
    from aegen.models import PRESETS  # imports torch: only for `aegen train`
    from aegen.settings.train import RESUMABLE

    command.epilog = EXAMPLES.format(resumable=", ".join(RESUMABLE))
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    command.add_argument(
        "model", metavar="MODEL", help=f"{words(list(PRESETS))} (see `aegen models`)"
    )
    command.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of settings keyed by their names (dataset, epochs, "
        "batch_size, lr, model_options, ...); flags given beside it win",
    )
    _add_setting_flags(command, model_optimizer_defaults())
    command.add_argument(
        "--out",
        type=Path,
        metavar="RUN_DIR",
        help="run folder (default runs/MODEL-DATASET, numbered if taken)",
    )
    command.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    command.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def run(args: argparse.Namespace) -> None:
    from aegen.settings.train import SETTINGS, merge_settings, read_settings_file
    from aegen.training.distributed import is_main
    from aegen.training.run import train

    flags = {name: getattr(args, name) for name in SETTINGS}
    flags["model_options"] = dict(flags["model_options"] or [])
    # A setting neither the file nor a flag gives keeps its default, or a resumed run's value.
    settings = merge_settings(read_settings_file(args.config) if args.config else {}, flags)
    trained = train(
        args.model,
        out=args.out,
        resume=args.resume,
        progress=False if args.quiet else None,
        **settings,
    )
    if is_main():  # under torchrun: once
        print(f"run folder: {trained.run_dir}")


def model_optimizer_defaults() -> dict[str, dict[str, float]]:
    """Each preset's declared learning rate and weight decay (imports the models, so torch)."""
    from aegen.models import PRESETS

    return {
        name: {
            "lr": entry.model_class.default_lr,
            "weight_decay": entry.model_class.default_weight_decay,
        }
        for name, entry in PRESETS.items()
    }


def setting_flag(name: str) -> str:
    """The `aegen train` flag of a setting."""
    from aegen.settings.train import SETTINGS

    return SETTINGS[name].metadata["flag"] or "--" + name.replace("_", "-")


def _add_setting_flags(
    command: argparse.ArgumentParser, model_defaults: dict[str, dict[str, float]]
) -> None:
    """One flag per TrainSettings field; a flag not given stays None so that a --config file or
    a resumed run's recorded value is kept."""
    from aegen.settings.train import SETTINGS, value_kind

    for name, spec in SETTINGS.items():
        kind, flag = value_kind(spec), setting_flag(name)
        help_text = _setting_help(name, model_defaults)
        meta = spec.metadata
        if kind is bool and spec.default:  # the flag turns it off
            command.add_argument(flag, dest=name, action="store_const", const=False, help=help_text)
        elif kind is bool:  # --NAME turns it on, --no-NAME off (a resumed run may want either)
            command.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif kind is dict:
            command.add_argument(
                flag,
                dest=name,
                type=_option,
                action="append",
                metavar=meta["metavar"],
                help=help_text,
            )
        else:
            metavar = meta["metavar"] or (
                "{" + ",".join(map(str, meta["choices"])) + "}"
                if meta["choices"]
                else {int: "N", float: "X"}.get(kind, name.upper())
            )
            command.add_argument(
                flag, dest=name, type=_setting_parser(spec), metavar=metavar, help=help_text
            )


def _setting_help(name: str, model_defaults: dict[str, dict[str, float]]) -> str:
    """A setting's meaning and its real default (per model for the optimizer's defaults)."""
    from aegen.settings.train import SETTINGS, value_kind

    spec = SETTINGS[name]
    meaning = spec.metadata["meaning"]
    if name in ("lr", "weight_decay"):
        by_value: dict[float, list[str]] = {}
        for model, defaults in model_defaults.items():
            by_value.setdefault(defaults[name], []).append(model)
        listed = "; ".join(
            f"{value:g} for {', '.join(models)}" for value, models in by_value.items()
        )
        return f"{meaning} (default: {listed})"
    if value_kind(spec) is bool:  # said as what the default does, and what the flag changes
        if spec.default:
            return f"{meaning} (default: on; {setting_flag(name)} turns it off)"
        return f"{meaning} (default: off)"
    if value_kind(spec) is dict or spec.default is None:
        return meaning
    return f"{meaning} (default: {spec.default})"


def _setting_parser(spec: dataclasses.Field) -> Any:
    """The argparse type of a setting: its kind, then the bounds TrainSettings declares."""
    from aegen.settings.train import check_value, value_kind

    kind = value_kind(spec)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            check_value(spec, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
