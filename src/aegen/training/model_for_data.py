"""The model a run trains: its options fitted to the data (image size, channels, classes) and its
initial weights seeded by the run's seed alone."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from aegen.data.datasets import ImageSet
from aegen.errors import ConfigError, DataError
from aegen.models import Autoencoder, build_model, preset


def seeded_model(model: str, options: dict[str, Any], seed: int) -> Autoencoder:
    """A fresh model whose initial weights depend on the run's seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return build_model(model, options)
        except (RuntimeError, MemoryError, OverflowError, ValueError) as exc:
            # Options torch cannot allocate or lay out: the first line of its message only.
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(f"cannot build {model} with these options ({reason})") from exc


def options_for_data(model: str, options: dict[str, Any], data: ImageSet) -> dict[str, Any]:
    """The model options with the data's image size and channels (and, for a conditional
    model, its classes) filled in; an option given that contradicts the data is one line."""
    channels, height, width = data.image_shape
    if height != width:
        raise DataError(
            f"{data.name} holds {width}x{height} images; aegen's models take square ones: "
            "pass --image-size S to resize and centre-crop them to SxS"
        )
    config_class = preset(model).config_class
    fitted = {"image_size": height, "channels": channels}
    fitted |= {
        key: value
        for key, value in config_class.defaults_for_images(height, channels).items()
        if key not in options
    }
    fields = {f.name for f in dataclasses.fields(config_class)}
    present = len(data.labels.unique()) if data.labelled else 0  # classes with images
    if "num_classes" in fields:  # a conditional model: the labels pick the class
        if present < 2:
            raise DataError(
                f"{model} is conditional and needs images of two or more classes; "
                f"{data.name} has {'one class' if present else 'no labels'} "
                "(give a folder with a sub-folder per class, or an .npz with labels)"
            )
        fitted["num_classes"] = _class_option("num_classes", options, data, len(data.classes))
    if "prior_classes" in fields:  # a prior conditioned on labels where the data has them
        default = len(data.classes) if present >= 2 else 0
        fitted["prior_classes"] = _class_option("prior_classes", options, data, default)
        if fitted["prior_classes"] and present < 2:
            raise DataError(
                f"{data.name} has {'one class' if present else 'no labels'}: "
                "train with --option prior_classes=0 (an unconditional prior)"
            )
    for key in ("image_size", "channels"):
        if key in options and options[key] != fitted[key]:
            flag = "--image-size" if key == "image_size" else "--channels"
            raise ConfigError(
                f"the model option {key}={options[key]} disagrees with the data "
                f"({key.replace('_', ' ')} {fitted[key]}); pass {flag} {options[key]} to "
                "convert the data instead"
            )
    return {**options, **fitted}


def _class_option(name: str, options: dict[str, Any], data: ImageSet, default: int) -> Any:
    """A model option counting classes (num_classes, prior_classes): the one given, else the
    default; fewer than the data's classes is one line (a value that is no whole number is
    passed on for the model's config to refuse)."""
    given = options.get(name, default)
    if isinstance(given, int) and 0 < given < len(data.classes):
        raise ConfigError(
            f"the model option {name}={given} is fewer than the data's {len(data.classes)} classes"
        )
    return given
