"""safetensors files: read by their header first (names, shapes, dtypes) so a foreign,
huge or damaged file is refused before its data is read; weights must be finite."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors_bytes

from aegen.errors import RunError
from aegen.files.atomic import write_atomic
from aegen.files.reading import check_plain_file


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], durable: bool = True
) -> None:
    """Write a safetensors file atomically (durable=False: no fsync, for caches)."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic(path, save_tensors_bytes(clean, metadata=metadata), durable)


def save_tensors_unless_same(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """save_tensors, unless path already holds exactly these tensors and metadata: safetensors
    orders metadata keys differently from one process to the next, and a file derived again
    (a resumed run's weights) must stay byte for byte what it was."""
    try:
        expected = {name: (tuple(v.shape), v.dtype) for name, v in tensors.items()}
        held, held_metadata = load_tensors(path, expected)
        same = held_metadata == metadata and all(
            torch.equal(held[name], value.detach().cpu()) for name, value in tensors.items()
        )
    except (OSError, RunError):  # missing, unreadable or another file: written anew
        same = False
    if not same:
        save_tensors(path, tensors, metadata)


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of tensors' names, dtypes, shapes and values: what a file's metadata records to
    tell a damaged or edited file (or one fitted to other weights) from the one written."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_tensors(
    path: Path, expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata; anything else (a pickle, garbage) is refused.

    With expected (name -> shape, dtype), the file must hold exactly those tensors: checked in
    its header, before any tensor data is read, so a huge or foreign file costs nothing."""

    def check(header: Header, metadata: dict[str, str]) -> None:
        if expected is not None:
            for name in [*expected, *header]:
                if name not in header or name not in expected:
                    raise RunError(f"{path} does not hold the expected tensors ({name!r} differs)")
                check_tensor(path, name, header[name], *expected[name], "needs")

    return read_tensors(path, check)


Header = dict[str, tuple[tuple[int, ...], str]]  # tensor name -> shape, safetensors dtype
_DTYPE_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def read_tensors(
    path: Path, check: Callable[[Header, dict[str, str]], None]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file whose header check() accepts (it raises
    RunError otherwise); floating-point tensors must be finite."""
    if not os.path.lexists(path):
        raise RunError(f"{path} is missing; the run is incomplete")
    check_plain_file(path)
    try:
        # Opened for PyTorch, safetensors maps the whole file at once (a 1 TiB one fails with
        # ENOMEM); its numpy view gives the header without that, so the check comes first.
        with safe_open(path, framework="numpy") as handle:
            metadata = handle.metadata() or {}
            header = {}
            for name in handle.keys():
                piece = handle.get_slice(name)
                header[name] = (tuple(piece.get_shape()), piece.get_dtype())
        check(header, metadata)
        with safe_open(path, framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in header}
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError) as exc:
        raise RunError(f"{path} is not a safetensors file (corrupt, truncated or foreign)") from exc
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RunError(f"{path} holds non-finite weights (NaN or infinity in {name!r})")
    return tensors, metadata


def check_tensor(
    path: Path,
    name: str,
    found: tuple[tuple[int, ...], str],
    shape: tuple[int, ...],
    dtype: torch.dtype,
    needs: str,
) -> None:
    """Refuse a tensor (from a header) whose shape or dtype is not the one needed."""
    found_shape, found_dtype = found
    if found_shape != shape:
        raise RunError(f"{path}: tensor {name!r} has shape {found_shape}, {needs} {shape}")
    if found_dtype != _DTYPE_NAMES.get(dtype):
        names = {text: str(torch_dtype)[6:] for torch_dtype, text in _DTYPE_NAMES.items()}
        raise RunError(
            f"{path}: tensor {name!r} is {names.get(found_dtype, found_dtype)}, "
            f"{needs} {str(dtype)[6:]}"
        )
