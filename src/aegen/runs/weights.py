"""A run's weights as safetensors files: model.safetensors and model-best.safetensors, each
checked against the model it is loaded into (names, shapes, dtypes, finite values)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from aegen.errors import RunError
from aegen.files.tensors import (
    Header,
    check_tensor,
    read_tensors,
    save_tensors,
    save_tensors_unless_same,
)
from aegen.runs.folder import BEST_WEIGHTS, WEIGHTS


def save_weights(
    run_dir: Path, model: torch.nn.Module, model_name: str, again: bool = False
) -> None:
    """Write model.safetensors; again: derived once more from the checkpoint (a resume), so left
    as it is where it already holds these weights."""
    save = save_tensors_unless_same if again else save_tensors
    save(run_dir / WEIGHTS, model.state_dict(), {"model": model_name})


def save_best_weights(
    run_dir: Path,
    state: Mapping[str, torch.Tensor],
    epoch: int,
    model_name: str,
    again: bool = False,
) -> None:
    """Write model-best.safetensors: the weights of the epoch with the lowest validation loss."""
    save = save_tensors_unless_same if again else save_tensors
    save(run_dir / BEST_WEIGHTS, dict(state), {"model": model_name, "epoch": str(epoch)})


def read_weights(
    path: Path, model: torch.nn.Module, model_name: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of model.safetensors (or model-best.safetensors), refusing,
    from its header before any data is read, a file of another model or with other shapes or
    dtypes than model's (which may live on torch's meta device: only its shapes count)."""
    return read_tensors(
        path, lambda header, metadata: check_weights(path, header, metadata, model, model_name, "")
    )


def load_weights(path: Path, model: torch.nn.Module, model_name: str) -> dict[str, str]:
    """Load model.safetensors (or model-best.safetensors) into model, refusing files of another
    model or with other shapes, dtypes or non-finite weights; returns the file's metadata."""
    tensors, metadata = read_weights(path, model, model_name)
    apply_weights(tensors, model, prefix="")
    return metadata


def check_weights(
    path: Path,
    header: Header,
    metadata: dict[str, str],
    model: torch.nn.Module,
    model_name: str,
    prefix: str,
) -> None:
    """Check that a header holds, under prefix, exactly the model's tensors (names, shapes and
    dtypes), naming the first difference in layer order."""
    if metadata.get("model", model_name) != model_name:
        raise RunError(f"{path} holds a {metadata['model']!r} model, not {model_name!r}")
    found = {k[len(prefix) :]: v for k, v in header.items() if k.startswith(prefix)}
    expected = model.state_dict()
    if set(found) != set(expected):
        missing = sorted(set(expected) - set(found)) or sorted(set(found) - set(expected))
        raise RunError(
            f"{path} does not hold a {model_name!r} model's weights (tensor {missing[0]!r} differs)"
        )
    for key, wanted in expected.items():  # in layer order, so the first mismatch is named
        needs = f"the {model_name!r} model needs"
        check_tensor(path, key, found[key], tuple(wanted.shape), wanted.dtype, needs)


def apply_weights(tensors: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> None:
    """Put the tensors named prefix + parameter name (checked by check_weights) into model."""
    model.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
