"""`aegen models`: every registered model preset (aegen.models.PRESETS), its parameter count,
optimizer defaults and options."""

from __future__ import annotations

import argparse
import json

SUMMARY = "list the model presets with their options and defaults"
DESCRIPTION = ""


def add_arguments(command: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> None:
    from aegen.models import PRESETS, build_model

    for name, entry in PRESETS.items():
        model = build_model(name)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name:8s} {parameters:>9,d} parameters  {entry.description}")
        print(
            f"{'':8s} Adam lr {model.default_lr:g}, weight decay {model.default_weight_decay:g}, "
            f"betas {model.adam_betas}; options (--option KEY=VALUE):"
        )
        for option, default, meaning in entry.option_defaults():
            shown = json.dumps(list(default) if isinstance(default, tuple) else default)
            print(f"{'':10s}{option + ' = ' + shown:<30} {meaning}")
