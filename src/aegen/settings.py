"""Training settings from a JSON file (`aegen train MODEL --config FILE`), checked key by key.

Command-line flags given beside the file override its values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegen.errors import ConfigError
from aegen.names import closest

DEFAULTS: dict[str, Any] = {
    "dataset": "mnist-5k", "data_root": None, "epochs": 10, "batch_size": 128, "lr": None,
    "weight_decay": None, "seed": 0, "val_fraction": 0.1, "model_options": {},
    "device": "auto", "precision": "fp32",
}


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings in a JSON object file; unknown keys and wrongly typed values are refused."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path} ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the config file {path} is not valid JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"the config file {path} must hold a JSON object of settings")
    for key, value in values.items():
        if key not in DEFAULTS:
            raise ConfigError(f"unknown setting {key!r}{closest(key, DEFAULTS)} in {path}; "
                              f"known settings: {', '.join(DEFAULTS)}")
        if key in ("dataset", "data_root", "device", "precision") and not isinstance(value, str):
            raise ConfigError(f"setting {key!r} in {path} must be a string, got {value!r}")
        if key == "model_options" and not isinstance(value, dict):
            raise ConfigError(f"setting 'model_options' in {path} must be a JSON object")
    return values


def merge_settings(file_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the file, then the flags that were given (None means not given)."""
    merged = {**DEFAULTS, **file_values}
    for key, value in flags.items():
        if key == "model_options":
            merged[key] = {**merged[key], **value}
        elif value is not None:
            merged[key] = value
    return merged
