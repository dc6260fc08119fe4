"""The run folder: everything a run is, in files anyone can read and nothing that executes.

    config.json             model preset and config, training config, data set: enough to rebuild
    model.safetensors       the latest weights
    model-best.safetensors  the weights of the epoch with the lowest validation loss
    checkpoint.safetensors  weights + optimizer state + finished epochs, to resume from
    history.jsonl           the training history: one JSON line per finished epoch
    scores.json             what `aegen evaluate` measured
    sampler-NAME.safetensors  fitted latent samplers
    *.png                   pictures

Run folders of aegen 0.1 named the history metrics.jsonl and the scores metrics.json; both are
still read.

Every file is written atomically; weights are safetensors and everything else JSON, so loading
a run never unpickles anything.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from aegen.data.background import DEFAULT_BACKGROUND, background_rgb
from aegen.errors import ConfigError, RunError
from aegen.files.atomic import write_atomic, write_json
from aegen.files.reading import is_number, parse_json, read_run_file

RUN_FORMAT = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "model-best.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.jsonl"
SCORES = "scores.json"
DIAGNOSIS = "diagnosis.json"  # what the end of training found wrong (scoring/diagnosis.py)
OLD_HISTORY, OLD_SCORES = "metrics.jsonl", "metrics.json"  # the names of aegen 0.1


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write config.json, stamped with the run-folder format."""
    write_json(run_dir / CONFIG, {"format": RUN_FORMAT, **config})


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read config.json, or explain why this folder is not a usable run."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir} is not a folder; give the folder that `aegen train` wrote")
    if not os.path.lexists(path):
        raise RunError(f"{run_dir} is not an aegen run folder (it has no {CONFIG})")
    config = parse_json(path, read_run_file(path))
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise RunError(
            f"{path} is from an incompatible aegen version "
            f"(format {config.get('format') if isinstance(config, dict) else '?'}, "
            f"this aegen reads format {RUN_FORMAT})"
        )
    _check_config(path, config)
    return config


def _check_config(path: Path, config: dict[str, Any]) -> None:
    """Check the shape of every value aegen reads from config.json, so that no later use of it
    meets a missing key or a wrong type (the model options are checked by the model's config)."""
    _field(path, config, "model", str)
    _field(path, config, "model_config", dict)
    _field(path, config, "default_sampler", str)
    train, data = _field(path, config, "train", dict), _field(path, config, "data", dict)
    seed = _field(path, train, "seed", int, "train.")
    fraction = _field(path, train, "val_fraction", float, "train.")
    _field(path, data, "dataset", str, "data.")
    _field(path, data, "n_train", int, "data.")
    _field(path, data, "n_val", int, "data.")
    if not isinstance(data.get("root"), (str, type(None))):
        raise RunError(f"{path}: data.root must be a string or null")
    for key, allowed in (("image_size", range(4, 1025)), ("channels", (1, 3))):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or value not in allowed):
            raise RunError(f"{path}: data.{key} must be null or one of the sizes aegen takes")
    try:  # absent in runs from before the setting: white
        background_rgb(data.get("background", DEFAULT_BACKGROUND))
    except ConfigError:
        raise RunError(
            f"{path}: data.background must be white, black, gray, grey or a colour #RRGGBB"
        ) from None
    if not isinstance(data.get("digest", ""), str):
        raise RunError(f"{path}: data.digest must be a string")
    if not isinstance(config.get("aegen_version", ""), str):
        raise RunError(f"{path}: aegen_version must be a string")
    if not 0 <= seed < 2**63 or not 0 < fraction < 1:
        raise RunError(f"{path}: train.seed or train.val_fraction is out of range")


def write_history(run_dir: Path, history: list[dict]) -> None:
    """Rewrite history.jsonl from the full history (so a resumed run never repeats a line)."""
    write_atomic(run_dir / HISTORY, "".join(json.dumps(m) + "\n" for m in history).encode())


def read_history(run_dir: Path) -> list[dict]:
    """The training history of a run: one dict of losses per finished epoch, checked."""
    path = _current_or_old(Path(run_dir), HISTORY, OLD_HISTORY)
    if not os.path.lexists(path):
        return []
    lines = read_run_file(path).split(b"\n")
    rows = [parse_json(path, line, f"line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    return check_history(path, rows)


def write_diagnosis(run_dir: Path, diagnosis: dict[str, Any]) -> None:
    """diagnosis.json: the numbers of the end-of-training checks and their findings."""
    write_atomic(run_dir / DIAGNOSIS, (json.dumps(diagnosis, indent=2) + "\n").encode())


def read_diagnosis(run_dir: Path) -> dict[str, Any] | None:
    """A run's diagnosis, checked (None for a run trained before aegen wrote one)."""
    path = Path(run_dir) / DIAGNOSIS
    if not os.path.lexists(path):
        return None
    diagnosis = parse_json(path, read_run_file(path))
    findings = diagnosis.get("findings") if isinstance(diagnosis, dict) else None
    if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
        raise RunError(f"{path} does not hold a diagnosis (a list of findings); train again")
    if not isinstance(diagnosis.get("checks"), dict):
        raise RunError(f"{path} does not hold the diagnosis' checks; train again")
    return diagnosis


SCORE_NAMES = ("fd_aegen", "precision", "recall", "label_entropy", "confident_share")
CLASS_SCORE_NAMES = ("label_entropy", "confident_share")  # only where the judge knows classes


def read_scores(run_dir: Path) -> dict:
    """What `aegen evaluate` measured for a run, or an error that says how to measure it."""
    path = _current_or_old(Path(run_dir), SCORES, OLD_SCORES)
    if not os.path.lexists(path):
        raise RunError(f"{run_dir} has no {SCORES}; run `aegen evaluate {run_dir}` first")
    scores = parse_json(path, read_run_file(path))
    if not isinstance(scores, dict):
        raise RunError(f"{path} does not hold a JSON object; run `aegen evaluate` again")
    _check_scores(path, scores)
    return scores


OPTIONAL_SCORE_NAMES = ("kid", "kid_se", "hf_share", "hf_ratio")  # newer runs have them


def _check_score_set(path: Path, scores: dict[str, Any], where: str) -> None:
    """The sample-quality scores of one sampler: the class scores and the newer ones, and the
    count of images scored, only if present."""
    for key in (*SCORE_NAMES, *OPTIONAL_SCORE_NAMES):
        required = key in SCORE_NAMES and key not in CLASS_SCORE_NAMES
        if required or key in scores:
            _field(path, scores, key, float, where)
    if "images" in scores:
        _field(path, scores, "images", int, where)


def _check_scores(path: Path, scores: dict[str, Any]) -> None:
    """Check the shape of every value the report and `aegen compare` read from scores.json."""
    for key in ("model", "dataset"):
        _field(path, scores, key, str)
    for key in ("protocol", "classifier"):
        _field(path, scores, key, dict)
    reconstruction = _field(path, scores, "reconstruction", dict)
    for key in ("model_loss", "pixel_mse"):
        _field(path, reconstruction, key, float, "reconstruction.")
    real_data = _field(path, scores, "real_data", dict)
    _check_score_set(path, real_data, "real_data.")
    if "reconstructed_data" in scores:  # written since the learned samplers (issue 16)
        rebuilt = _field(path, scores, "reconstructed_data", dict)
        _check_score_set(path, rebuilt, "reconstructed_data.")
    samplers = _field(path, scores, "samplers", dict)
    for name in samplers:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):  # it names files: no path in it
            raise RunError(f"{path}: {name[:40]!r} is not a sampler name")
        _check_score_set(path, _field(path, samplers, name, dict, "samplers."), f"{name}.")
    if "likelihood" in scores:  # each kind scored, and notes (the NLL of a cvae is p(x | y))
        likelihood = _field(path, scores, "likelihood", dict)
        if not any(isinstance(value, dict) for value in likelihood.values()):
            raise RunError(f"{path}: likelihood holds no scores; run `aegen evaluate` again")
        for kind in likelihood:
            if not isinstance(likelihood[kind], str):
                values = _field(path, likelihood, kind, dict, "likelihood.")
                for key in ("k", "nll", "elbo"):
                    _field(path, values, key, float, f"likelihood.{kind}.")


def _current_or_old(run_dir: Path, name: str, old_name: str) -> Path:
    """The file under its current name, or under aegen 0.1's name where only that exists."""
    path = run_dir / name
    old = run_dir / old_name
    return old if not os.path.lexists(path) and os.path.lexists(old) else path


def check_history(path: Path, rows: Any) -> list[dict]:
    """A history is a list of objects of numbers, the same keys in each, for epochs 1, 2, ..."""
    if not isinstance(rows, list):
        raise RunError(f"{path}: its history is not a list of epochs")
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise RunError(f"{path}: history entry {number} is not a JSON object")
        for key, value in row.items():
            if not is_number(value):
                raise RunError(f"{path}: {key[:40]!r} of history entry {number} is not a number")
        if row.get("epoch") != number or not isinstance(row["epoch"], int):
            raise RunError(f"{path}: history entry {number} is not epoch {number}")
        if "loss" not in row or "val_loss" not in row or set(row) != set(rows[0]):
            raise RunError(f"{path}: history entry {number} lacks values the first one has")
    return rows


_KINDS = {str: "a string", int: "a whole number", float: "a number", dict: "a JSON object"}
_CONTAINERS: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}


def _field(path: Path, section: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """section[key], which must be there and of kind (float: any number; int and float: no bool)."""
    if key not in section:
        raise RunError(f"{path} is incomplete: it has no {where}{key}")
    value = section[key]
    if kind is float:
        fits = is_number(value)
    else:
        fits = isinstance(value, kind) and not isinstance(value, bool)
    if not fits:
        found = _CONTAINERS.get(type(value)) or json.dumps(value)  # a number, true/false, null
        raise RunError(f"{path}: {where}{key} must be {_KINDS[kind]}, not {found}")
    return value
