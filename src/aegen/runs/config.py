"""config.json: what a run is, as one typed record, written and read here and nowhere else.

A run folder's config names the model and its resolved options, records every training
setting (`TrainSettings`, split into its "train" and "data" sections) and what the data held
when the run began (its shape, classes, digest and split sizes), so that the run can be
rebuilt, resumed and checked against its data. Runs of older aegen versions lack some of
these keys; they read with the defaults of their time.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aegen.data.background import DEFAULT_BACKGROUND
from aegen.errors import ConfigError, RunError
from aegen.files.atomic import write_json
from aegen.files.reading import json_field, parse_json, read_run_file
from aegen.settings.train import SETTINGS, TrainSettings, settings_from

RUN_FORMAT = 1
CONFIG = "config.json"

# config.json's "data" section: the setting each key records (a key its own name otherwise).
DATA_KEYS = {"root": "data_root"}


@dataclass(frozen=True)
class DataRecord:
    """What the data held when the run began, beyond the settings that chose it."""

    image_shape: tuple[int, ...] | None  # [C, H, W]; None in runs from before it was recorded
    classes: tuple[str, ...]
    digest: str  # of the images and labels, "" where unknown: a changed folder is refused
    n_train: int
    n_val: int


@dataclass(frozen=True)
class RunConfig:
    """A run's config.json: model, resolved model options, settings, data, sampler, device."""

    model: str
    model_config: dict[str, Any]  # checked by the model's own config class when it is built
    settings: TrainSettings
    data: DataRecord
    default_sampler: str
    device: str | None = None
    aegen_version: str | None = None

    @property
    def dataset(self) -> str:
        return self.settings.dataset

    def with_settings(self, settings: TrainSettings) -> RunConfig:
        """This config with other settings (a resumed run's new epochs or rate)."""
        return dataclasses.replace(self, settings=settings)

    def to_json(self) -> dict[str, Any]:
        """The JSON object config.json holds, in the order aegen has always written it."""
        data_settings = self.settings.section("data")
        data = {key: data_settings[DATA_KEYS.get(key, key)] for key in _DATA_SETTING_KEYS}
        data |= {
            "image_shape": list(self.data.image_shape) if self.data.image_shape else None,
            "classes": list(self.data.classes),
            "digest": self.data.digest,
            "n_train": self.data.n_train,
            "n_val": self.data.n_val,
        }
        return {
            "format": RUN_FORMAT,
            "aegen_version": self.aegen_version,
            "model": self.model,
            "model_config": self.model_config,
            "train": self.settings.section("train"),
            "data": data,
            "default_sampler": self.default_sampler,
            "device": self.device,
        }

    @classmethod
    def from_json(cls, path: Path, value: Any) -> RunConfig:
        """The record a config.json holds, every value checked (RunError names the file)."""
        if not isinstance(value, dict) or value.get("format") != RUN_FORMAT:
            found = value.get("format") if isinstance(value, dict) else "?"
            raise RunError(
                f"{path} is from an incompatible aegen version "
                f"(format {found}, this aegen reads format {RUN_FORMAT})"
            )
        model = json_field(path, value, "model", str)
        model_config = json_field(path, value, "model_config", dict)
        default_sampler = json_field(path, value, "default_sampler", str)
        train, data = json_field(path, value, "train", dict), json_field(path, value, "data", dict)
        json_field(path, train, "seed", int, "train.")
        json_field(path, train, "val_fraction", float, "train.")
        json_field(path, data, "dataset", str, "data.")
        n_train = json_field(path, data, "n_train", int, "data.")
        n_val = json_field(path, data, "n_val", int, "data.")
        version = value.get("aegen_version")
        if not isinstance(version, (str, type(None))):
            raise RunError(f"{path}: aegen_version must be a string")
        device = value.get("device")
        if not isinstance(device, (str, type(None))):
            raise RunError(f"{path}: device must be a string")
        record = DataRecord(
            image_shape=_image_shape(path, data.get("image_shape")),
            classes=_classes(path, data.get("classes")),
            digest=_digest(path, data.get("digest", "")),
            n_train=n_train,
            n_val=n_val,
        )
        settings = _recorded_settings(path, train, data)
        return cls(model, model_config, settings, record, default_sampler, device, version)


_DATA_SETTING_KEYS = ("dataset", "root", "image_size", "channels", "background")


def _recorded_settings(path: Path, train: dict[str, Any], data: dict[str, Any]) -> TrainSettings:
    """The settings the train and data sections record; settings a run predates keep their
    defaults, and names this aegen no longer knows are left out."""
    values = {
        k: v
        for k, v in train.items()
        if k in SETTINGS and SETTINGS[k].metadata["section"] == "train"
    }
    for key in _DATA_SETTING_KEYS:
        if data.get(key) is not None:
            values[DATA_KEYS.get(key, key)] = data[key]
    values.setdefault("background", DEFAULT_BACKGROUND)  # none before the setting: white
    if not isinstance(values.get("data_root"), (str, type(None))):
        raise RunError(f"{path}: data.root must be a string or null")
    try:
        return settings_from(values, str(path))
    except ConfigError as exc:
        raise RunError(f"{path} records settings aegen cannot use ({exc})") from None


def _image_shape(path: Path, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise RunError(f"{path}: data.image_shape must be [channels, height, width]")
    return tuple(value)


def _classes(path: Path, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RunError(f"{path}: data.classes must be a list of class names")
    return tuple(value)


def _digest(path: Path, value: Any) -> str:
    if not isinstance(value, str):
        raise RunError(f"{path}: data.digest must be a string")
    return value


def write_run_config(run_dir: Path, config: RunConfig) -> None:
    """Write config.json atomically."""
    write_json(Path(run_dir) / CONFIG, config.to_json())


def read_run_config(run_dir: Path) -> RunConfig:
    """Read config.json, or explain in one line why this folder is not a usable run."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir} is not a folder; give the folder that `aegen train` wrote")
    if not os.path.lexists(path):
        raise RunError(f"{run_dir} is not an aegen run folder (it has no {CONFIG})")
    return RunConfig.from_json(path, parse_json(path, read_run_file(path)))
