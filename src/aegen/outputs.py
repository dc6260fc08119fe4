"""Writing tensors a user asked for, in the format the file name asks for."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from aegen.errors import ConfigError
from aegen.files import write_atomic

IMAGE_FORMATS = (".png", ".npy", ".pt")
CODE_FORMATS = (".npz", ".pt")


def check_suffix(path: Path, formats: tuple[str, ...]) -> None:
    """Refuse an output name whose format aegen cannot write, before any work is done."""
    if path.suffix.lower() not in formats:
        raise ConfigError(f"cannot write {path}: choose a name ending in {', '.join(formats)}")


def save_images(path: Path, images: torch.Tensor, columns: int = 8) -> None:
    """Images [N, 1, 28, 28] in [0, 1] as a PNG grid, a .npy array [N, 28, 28] or a .pt tensor."""
    check_suffix(path, IMAGE_FORMATS)
    suffix = path.suffix.lower()
    if suffix == ".png":
        from aegen.plots import save_image_grid
        save_image_grid(path, images, columns)
    elif suffix == ".npy":
        import numpy as np
        buffer = io.BytesIO()
        np.save(buffer, images.squeeze(1).numpy(), allow_pickle=False)
        write_atomic(path, buffer.getvalue())
    else:
        buffer = io.BytesIO()
        torch.save(images.contiguous(), buffer)
        write_atomic(path, buffer.getvalue())


def save_codes(path: Path, codes: torch.Tensor, labels: torch.Tensor) -> None:
    """Codes [N, D] and labels [N] as an .npz (arrays `codes`, `labels`) or a .pt dict."""
    check_suffix(path, CODE_FORMATS)
    buffer = io.BytesIO()
    if path.suffix.lower() == ".npz":
        import numpy as np
        np.savez(buffer, codes=codes.numpy(), labels=labels.numpy())
    else:
        torch.save({"codes": codes.contiguous(), "labels": labels.contiguous()}, buffer)
    write_atomic(path, buffer.getvalue())
