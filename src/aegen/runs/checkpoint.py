"""checkpoint.safetensors: weights, every optimizer's state, the finished epochs and their
history, and the best epoch's weights, in one file replaced atomically at the end of each epoch:
the run's single source of truth (runs/run.py derives model.safetensors, model-best.safetensors
and history.jsonl from it). Every part is checked before anything is loaded."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from aegen.errors import RunError
from aegen.files.reading import is_number, parse_json
from aegen.files.tensors import (
    Header,
    check_tensor,
    read_tensors,
    save_tensors,
)
from aegen.runs.folder import CHECKPOINT, check_history
from aegen.runs.weights import apply_weights, check_weights

BEST = "best."  # the prefix of the best epoch's weights in a checkpoint


class Optimizer(Protocol):
    """What a checkpoint needs of an optimizer: torch.optim's state_dict layout (the trainer's
    FusedAdam and torch.optim.Adam both have it)."""

    param_groups: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


@dataclass
class BestWeights:
    """The weights of the epoch with the lowest validation loss so far (on the CPU)."""

    epoch: int
    state: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: torch.nn.Module, epoch: int) -> BestWeights:
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return cls(epoch, state)


def _optimizer_prefix(group: str) -> str:
    # The single group of most models keeps the plain names of format-1 checkpoints.
    return "" if group == "model" else f"-{group}"


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    model_name: str,
    optimizers: Mapping[str, Optimizer],
    epoch: int,
    history: list[dict],
    best: BestWeights | None = None,
) -> None:
    """Write checkpoint.safetensors (weights, optimizer states, epoch, metrics, the best
    epoch's weights) atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    metadata = {"model": model_name, "epoch": str(epoch), "history": json.dumps(history)}
    if best is not None:
        tensors.update({BEST + k: v for k, v in best.state.items()})
        metadata["best_epoch"] = str(best.epoch)
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
        groups = [  # a recorded step's rate is a tensor; the file keeps its number
            {k: v.item() if torch.is_tensor(v) else v for k, v in group.items()}
            for group in opt_state["param_groups"]
        ]
        metadata[f"param_groups{suffix}"] = json.dumps(groups)
        metadata[f"optimizer_scalars{suffix}"] = json.dumps(scalars)
    save_tensors(run_dir / CHECKPOINT, tensors, metadata)


def load_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    model_name: str,
    optimizers: Mapping[str, Optimizer],
) -> tuple[int, list[dict], BestWeights | None]:
    """Restore weights and optimizer states; return the finished epochs, their metrics and the
    best epoch's weights (None in a checkpoint of an aegen that did not keep them).

    All of it is checked before anything is loaded: tensor names, shapes and dtypes in the
    header, the epochs against the history, the optimizer settings against the optimizers'."""
    path = run_dir / CHECKPOINT

    def check(header: Header, metadata: dict[str, str]) -> None:
        check_weights(path, header, metadata, model, model_name, prefix="model.")
        if "best_epoch" in metadata:
            check_weights(path, header, metadata, model, model_name, prefix=BEST)
        _check_optimizer_tensors(path, header, optimizers)

    tensors, metadata = read_tensors(path, check)
    epoch = metadata.get("epoch", "")
    if not (epoch.isascii() and epoch.isdigit() and len(epoch) < 10):
        raise RunError(f"{path}: its epoch {epoch[:20]!r} is not a whole number >= 0")
    history = check_history(path, _metadata_json(path, metadata, "history"))
    if len(history) != int(epoch):
        raise RunError(f"{path} records epoch {epoch} but a history of {len(history)} epochs")
    best = None
    if "best_epoch" in metadata:
        best_epoch = metadata["best_epoch"]
        digits = best_epoch.isascii() and best_epoch.isdigit() and len(best_epoch) < 10
        if not (digits and 1 <= int(best_epoch) <= int(epoch)):
            raise RunError(f"{path}: its best epoch {best_epoch[:20]!r} is not one of its epochs")
        state = {k[len(BEST) :]: v for k, v in tensors.items() if k.startswith(BEST)}
        best = BestWeights(int(best_epoch), state)
    states = [
        (optimizer, _optimizer_state(path, tensors, metadata, _optimizer_prefix(group), optimizer))
        for group, optimizer in optimizers.items()
    ]
    apply_weights(tensors, model, prefix="model.")
    try:
        for optimizer, optimizer_state in states:
            optimizer.load_state_dict(optimizer_state)
    except (KeyError, ValueError, TypeError) as exc:
        raise RunError(f"{path} is incomplete or from another aegen version ({exc})") from exc
    return int(epoch), history, best


def _optimizer_state(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    suffix: str,
    optimizer: Optimizer,
) -> dict[str, Any]:
    """One optimizer's state dict from a checkpoint's tensors (checked by _check_optimizer_tensors)
    and metadata (checked here against the optimizer)."""
    param_groups = _metadata_json(path, metadata, f"param_groups{suffix}")
    _check_param_groups(path, param_groups, optimizer, f"param_groups{suffix}")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(f"optimizer{suffix}."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    scalars = _metadata_json(path, metadata, f"optimizer_scalars{suffix}")
    count = sum(len(group["params"]) for group in optimizer.param_groups)
    if not isinstance(scalars, dict) or not all(
        _parameter_index(index, count) is not None
        and isinstance(values, dict)
        and all(map(is_number, values.values()))
        for index, values in scalars.items()
    ):
        raise RunError(f"{path}: its optimizer_scalars{suffix} are not numbers per parameter")
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    _match_parameter_layout(optimizer, state)
    return {"state": state, "param_groups": param_groups}


def _parameter_index(text: str, count: int) -> int | None:
    """The parameter index a name part gives, if it is one of count parameters."""
    if text.isascii() and text.isdigit() and len(text) < 10 and int(text) < count:
        return int(text)
    return None


def _check_optimizer_tensors(
    path: Path, header: Header, optimizers: Mapping[str, Optimizer]
) -> None:
    """Every tensor but the model's must be optimizer{suffix}.INDEX.KEY of an existing parameter,
    shaped like it (moments) or a scalar (step counts)."""
    params = {
        _optimizer_prefix(group): [p for g in optimizer.param_groups for p in g["params"]]
        for group, optimizer in optimizers.items()
    }
    for name, found in header.items():
        if name.startswith(("model.", BEST)):  # checked by check_weights
            continue
        head, _, rest = name.partition(".")
        index, _, key = rest.partition(".")
        suffix = head[len("optimizer") :] if head.startswith("optimizer") else None
        position = None if suffix not in params else _parameter_index(index, len(params[suffix]))
        if position is None or not key:
            raise RunError(f"{path} holds a tensor {name[:60]!r} of no optimizer of the model")
        param = params[suffix or ""][position]
        shape = () if found[0] == () else tuple(param.shape)
        check_tensor(path, name, found, shape, param.dtype, "needs")


def _check_param_groups(path: Path, saved: Any, optimizer: Optimizer, key: str) -> None:
    """The saved parameter groups must have the optimizer's groups, parameters and value kinds
    (settings a newer torch added may be missing: the optimizer keeps its own)."""
    fresh = optimizer.state_dict()["param_groups"]
    if (
        not isinstance(saved, list)
        or len(saved) != len(fresh)
        or not all(isinstance(group, dict) for group in saved)
        or any(group.get("params") != default["params"] for group, default in zip(saved, fresh))
    ):
        raise RunError(f"{path}: its {key} do not match the model's optimizer")
    for group, default in zip(saved, fresh):
        for name, value in default.items():
            if name in group and not _same_kind(group[name], value):
                raise RunError(f"{path}: its {key} hold a wrong {name!r}")


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a saved optimizer setting is of the kind of the fresh optimizer's value."""
    if default is None or isinstance(default, bool):
        return value is None or isinstance(value, bool)
    if isinstance(default, (int, float)):
        return is_number(value) and math.isfinite(value)
    if isinstance(default, (tuple, list)):
        return (
            isinstance(value, list)
            and len(value) == len(default)
            and all(map(_same_kind, value, default))
        )
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _match_parameter_layout(optimizer: Optimizer, state: dict[int, dict[str, Any]]) -> None:
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


def _metadata_json(path: Path, metadata: dict[str, str], key: str) -> Any:
    """A JSON value of a safetensors file's metadata."""
    if key not in metadata:
        raise RunError(f"{path} is incomplete or from another aegen version (no {key!r})")
    return parse_json(path, metadata[key].encode(), key)
