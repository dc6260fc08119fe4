"""The model a run trains: its options fitted to the data (image size, channels, classes) and its
initial weights seeded by the run's seed alone."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aegen.data.datasets import ImageSet
from aegen.errors import ConfigError, DataError, first_line
from aegen.files.memory import free_memory
from aegen.models import Autoencoder, build_model, preset

# A training's peak per fp32 parameter, measured (a VAE of 326 million: 17.4 GB at its first
# checkpoint): weights, gradients and Adam's two moments (16 bytes), the best epoch's copy (4),
# and the checkpoint of weights and moments serialised in memory before it is written (twice 16).
BYTES_PER_PARAMETER = 52
# What torch raises for options it cannot allocate or lay out (TypeError: a size past int64).
UNBUILDABLE = (RuntimeError, MemoryError, OverflowError, ValueError, TypeError)


def seeded_model(model: str, options: dict[str, Any], seed: int) -> Autoencoder:
    """A fresh model whose initial weights depend on the run's seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return build_model(model, options)
        except UNBUILDABLE as exc:
            raise _cannot_build(model, exc) from exc


def _cannot_build(model: str, exc: BaseException) -> ConfigError:
    """The one line for options torch cannot build."""
    return ConfigError(f"cannot build {model} with these options ({first_line(exc)})")


def check_model_size(
    model: str, options: dict[str, Any], batch_size: int | None, n_train: int, memory: int
) -> None:
    """Refuse, before anything is allocated, options whose model would not fit in `memory`
    bytes: built on torch's meta device (shapes only), its weights with their gradients and
    Adam's two moments, and one training step's tensors on a batch."""
    with torch.device("meta"):
        try:
            net = build_model(model, options)
        except UNBUILDABLE as exc:
            raise _cannot_build(model, exc) from exc
        parameters = sum(p.numel() for p in net.parameters())
        need = parameters * BYTES_PER_PARAMETER
        if need > memory:
            raise ConfigError(
                f"{model} with these options has {parameters:,d} parameters: training needs "
                f"about {need / 2**30:,.1f} GiB for them, more than the "
                f"{memory / 2**30:,.1f} GiB free here"
            )
        batch = batch_size or net.default_batch_size(n_train)
        # Running the loss on the meta device imports torch's compiler (a second of start-up):
        # only for options far beyond their defaults, where one step may not fit.
        step = _step_bytes(net, batch) if _far_beyond_defaults(model, options) else None
    if step is not None and step > memory:
        raise ConfigError(
            f"{model} with these options needs about {step / 2**30:,.1f} GiB for one training "
            f"step of {batch} images, more than the {memory / 2**30:,.1f} GiB here; choose "
            "smaller options or a smaller --batch-size"
        )


def _far_beyond_defaults(model: str, options: dict[str, Any]) -> bool:
    """Whether a whole-number option is over 64 times its preset's default."""
    for name, default, _ in preset(model).option_defaults():
        value = options.get(name, default)
        numbers = isinstance(value, int) and isinstance(default, int) and default > 0
        if numbers and not isinstance(value, bool) and value > 64 * default:
            return True
    return False


class _TensorBytes(TorchDispatchMode):
    """Adds up the bytes of every tensor the operations under it produce."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.total += tensor.numel() * tensor.element_size()
        return out


def _step_bytes(net: Autoencoder, batch: int) -> int | None:
    """The bytes of the tensors one loss evaluation makes on a batch, on the meta device (an
    upper bound of its activations); None for a model whose loss reads values (ldm, vamp)."""
    x = torch.empty(batch, *net.image_shape)
    labels = torch.zeros(batch, dtype=torch.long) if net.conditional else None
    try:
        with _TensorBytes() as counted:
            net.loss(x, labels)
    except UNBUILDABLE + (NotImplementedError,):
        return None
    return counted.total


def memory_of(device: torch.device) -> int:
    """The bytes a model may use on device: the GPU's, or the memory this machine has free."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return free_memory()


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
