"""The run folder's files: everything a run is, in files anyone can read and nothing that
executes; their names, and the readers and writers of those not owned elsewhere.

    config.json             model, options, settings, data (runs/config.py: RunConfig)
    model.safetensors       the latest weights
    model-best.safetensors  the weights of the epoch with the lowest validation loss
    checkpoint.safetensors  weights + optimizer state + finished epochs, to resume from
    history.jsonl           the training history: one JSON line per finished epoch
    scores.json             what `aegen evaluate` measured
    sampler-NAME.safetensors  fitted latent samplers
    *.png                   pictures

Run folders of aegen 0.1 named the history metrics.jsonl and the scores metrics.json; both are
still read.

runs/run.py is the run folder as one object (create, resume, commit an epoch, open). Every file
is written atomically; weights are safetensors and everything else JSON, so loading
a run never unpickles anything.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from aegen.errors import RunError
from aegen.files.atomic import write_atomic
from aegen.files.reading import is_number, json_field, parse_json, read_run_file

WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "model-best.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.jsonl"
SCORES = "scores.json"
DIAGNOSIS = "diagnosis.json"  # what the end of training found wrong (scoring/diagnosis.py)
OLD_HISTORY, OLD_SCORES = "metrics.jsonl", "metrics.json"  # the names of aegen 0.1


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
            json_field(path, scores, key, float, where)
    if "images" in scores:
        json_field(path, scores, "images", int, where)


def _check_scores(path: Path, scores: dict[str, Any]) -> None:
    """Check the shape of every value the report and `aegen compare` read from scores.json."""
    for key in ("model", "dataset"):
        json_field(path, scores, key, str)
    for key in ("protocol", "classifier"):
        json_field(path, scores, key, dict)
    reconstruction = json_field(path, scores, "reconstruction", dict)
    for key in ("model_loss", "pixel_mse"):
        json_field(path, reconstruction, key, float, "reconstruction.")
    real_data = json_field(path, scores, "real_data", dict)
    _check_score_set(path, real_data, "real_data.")
    if "reconstructed_data" in scores:  # written since the learned samplers (issue 16)
        rebuilt = json_field(path, scores, "reconstructed_data", dict)
        _check_score_set(path, rebuilt, "reconstructed_data.")
    samplers = json_field(path, scores, "samplers", dict)
    for name in samplers:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):  # it names files: no path in it
            raise RunError(f"{path}: {name[:40]!r} is not a sampler name")
        _check_score_set(path, json_field(path, samplers, name, dict, "samplers."), f"{name}.")
    if "likelihood" in scores:  # each kind scored, and notes (the NLL of a cvae is p(x | y))
        likelihood = json_field(path, scores, "likelihood", dict)
        if not any(isinstance(value, dict) for value in likelihood.values()):
            raise RunError(f"{path}: likelihood holds no scores; run `aegen evaluate` again")
        for kind in likelihood:
            if not isinstance(likelihood[kind], str):
                values = json_field(path, likelihood, kind, dict, "likelihood.")
                for key in ("k", "nll", "elbo"):
                    json_field(path, values, key, float, f"likelihood.{kind}.")


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
