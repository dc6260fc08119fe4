"""The run folder: everything a run is, in files anyone can read and nothing that executes.

    config.json             model preset and config, training config, data set: enough to rebuild
    model.safetensors       the latest weights
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors_bytes

from aegen.errors import RunError
from aegen.store.atomic import write_atomic, write_json

RUN_FORMAT = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.jsonl"
SCORES = "scores.json"
OLD_HISTORY, OLD_SCORES = "metrics.jsonl", "metrics.json"  # the names of aegen 0.1


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write config.json, stamped with the run-folder format."""
    write_json(run_dir / CONFIG, {"format": RUN_FORMAT, **config})


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read config.json, or explain why this folder is not a usable run."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir} is not a folder; give the folder that `aegen train` wrote")
    if not path.is_file():
        raise RunError(f"{run_dir} is not an aegen run folder (it has no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise RunError(
            f"{path} is from an incompatible aegen version "
            f"(format {config.get('format') if isinstance(config, dict) else '?'}, "
            f"this aegen reads format {RUN_FORMAT})"
        )
    return config


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic(path, save_tensors_bytes(clean, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata; anything else (a pickle, garbage) is refused."""
    if not path.is_file():
        raise RunError(f"{path} is missing; the run is incomplete")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise RunError(f"{path} is not a safetensors file (corrupt, truncated or foreign)") from exc
    return tensors, metadata


def save_weights(run_dir: Path, model: torch.nn.Module, model_name: str) -> None:
    """Write model.safetensors."""
    save_tensors(run_dir / WEIGHTS, model.state_dict(), {"model": model_name})


def load_weights(path: Path, model: torch.nn.Module, model_name: str) -> None:
    """Load model.safetensors into model, refusing files of another model or with other shapes."""
    _apply_weights(path, *load_tensors(path), model, model_name, prefix="")


def _apply_weights(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    model: torch.nn.Module,
    model_name: str,
    prefix: str,
) -> None:
    """Put the tensors named prefix + parameter name into model, after checking every one."""
    if metadata.get("model", model_name) != model_name:
        raise RunError(f"{path} holds a {metadata['model']!r} model, not {model_name!r}")
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = model.state_dict()
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state)) or sorted(set(state) - set(expected))
        raise RunError(
            f"{path} does not hold a {model_name!r} model's weights (tensor {missing[0]!r} differs)"
        )
    for key, wanted in expected.items():  # in layer order, so the first mismatch is named
        if state[key].shape != wanted.shape or state[key].dtype != wanted.dtype:
            raise RunError(
                f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, "
                f"the {model_name!r} model needs {tuple(wanted.shape)}"
            )
    model.load_state_dict(state)


def _optimizer_prefix(group: str) -> str:
    # The single group of most models keeps the plain names of format-1 checkpoints.
    return "" if group == "model" else f"-{group}"


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    model_name: str,
    optimizers: Mapping[str, torch.optim.Optimizer],
    epoch: int,
    history: list[dict],
) -> None:
    """Write checkpoint.safetensors (weights, optimizer states, epoch, metrics) atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    metadata = {"model": model_name, "epoch": str(epoch), "history": json.dumps(history)}
    for group, optimizer in optimizers.items():
        suffix = _optimizer_prefix(group)
        opt_state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer{suffix}.{index}.{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        metadata[f"param_groups{suffix}"] = json.dumps(opt_state["param_groups"])
        metadata[f"optimizer_scalars{suffix}"] = json.dumps(scalars)
    save_tensors(run_dir / CHECKPOINT, tensors, metadata)


def load_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    model_name: str,
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> tuple[int, list[dict]]:
    """Restore weights and optimizer states; return the finished epochs and their metrics."""
    path = run_dir / CHECKPOINT
    tensors, metadata = load_tensors(path)
    _apply_weights(path, tensors, metadata, model, model_name, prefix="model.")
    try:
        for group, optimizer in optimizers.items():
            suffix = _optimizer_prefix(group)
            state: dict[int, dict[str, Any]] = {}
            for key, value in tensors.items():
                if key.startswith(f"optimizer{suffix}."):
                    _, index, name = key.split(".", 2)
                    state.setdefault(int(index), {})[name] = value
            for index, values in json.loads(metadata[f"optimizer_scalars{suffix}"]).items():
                state.setdefault(int(index), {}).update(values)
            _match_parameter_layout(optimizer, state)
            optimizer.load_state_dict(
                {"state": state, "param_groups": json.loads(metadata[f"param_groups{suffix}"])}
            )
        return int(metadata["epoch"]), json.loads(metadata["history"])
    except (KeyError, ValueError, TypeError) as exc:
        raise RunError(f"{path} is incomplete or from another aegen version ({exc})") from exc


def _match_parameter_layout(
    optimizer: torch.optim.Optimizer, state: dict[int, dict[str, Any]]
) -> None:
    """Give each moment tensor its parameter's device and memory layout (channels_last for
    convolutions): the fused Adam kernel walks parameter and state memory side by side, so a
    state saved in the usual layout must not meet a channels_last parameter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in state.items():
        for key, value in values.items():
            if (
                torch.is_tensor(value)
                and index < len(params)
                and value.shape == params[index].shape
            ):
                values[key] = torch.empty_like(params[index], dtype=value.dtype).copy_(value)


def write_history(run_dir: Path, history: list[dict]) -> None:
    """Rewrite history.jsonl from the full history (so a resumed run never repeats a line)."""
    write_atomic(run_dir / HISTORY, "".join(json.dumps(m) + "\n" for m in history).encode())


def read_history(run_dir: Path) -> list[dict]:
    """The training history of a run: one dict of losses per finished epoch."""
    path = _current_or_old(Path(run_dir), HISTORY, OLD_HISTORY)
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON lines ({exc})") from exc


def read_scores(run_dir: Path) -> dict:
    """What `aegen evaluate` measured for a run, or an error that says how to measure it."""
    path = _current_or_old(Path(run_dir), SCORES, OLD_SCORES)
    if not path.is_file():
        raise RunError(f"{run_dir} has no {SCORES}; run `aegen evaluate {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from exc


def _current_or_old(run_dir: Path, name: str, old_name: str) -> Path:
    """The file under its current name, or under aegen 0.1's name where only that exists."""
    path = run_dir / name
    return run_dir / old_name if not path.exists() and (run_dir / old_name).exists() else path
