"""Tensors as files in the format the file name asks for: PNG image grids, .npy, .npz, .pt."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from aegen.errors import ConfigError
from aegen.export.grid import grid_png, tile
from aegen.files.atomic import write_atomic

GRID_SCALE = 2  # MNIST digits are 28 px: draw each pixel as 2x2 so a grid is readable
LARGE_IMAGE = 48  # images this wide or wider are drawn at their own size


def image_grid_png(images: torch.Tensor, columns: int, scale: int | None = None) -> bytes:
    """Images [N, C, H, W] in [0, 1] (C 1 or 3) -> PNG bytes of a grid with `columns` per row;
    small images are drawn scale x larger (default: GRID_SCALE below LARGE_IMAGE pixels)."""
    images = images.detach().cpu().float().clamp(0, 1)
    if scale is None:
        scale = GRID_SCALE if images.shape[-1] < LARGE_IMAGE else 1
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return grid_png(tile(images, columns, padding=2, pad_value=1.0))


def save_image_grid(path: Path, images: torch.Tensor, columns: int = 8) -> None:
    """Write a grid of images [N, C, H, W] in [0, 1] as a PNG."""
    write_atomic(path, image_grid_png(images, columns))


IMAGE_FORMATS = (".png", ".npy", ".pt")
MAX_GRID_IMAGES = 10_000  # a 100 x 100 grid of 56-pixel cells: 31 Mpixels already
CODE_FORMATS = (".npz", ".pt")


def check_suffix(path: Path, formats: tuple[str, ...]) -> None:
    """Refuse an output name whose format aegen cannot write, before any work is done."""
    if path.suffix.lower() not in formats:
        raise ConfigError(f"cannot write {path}: choose a name ending in {', '.join(formats)}")


def check_image_output(path: Path, count: int) -> None:
    """Refuse, before any work, a format aegen cannot write or a PNG grid too large to view."""
    check_suffix(path, IMAGE_FORMATS)
    if path.suffix.lower() == ".png" and count > MAX_GRID_IMAGES:
        raise ConfigError(
            f"a PNG grid holds at most {MAX_GRID_IMAGES:,d} images, got "
            f"{count:,d}; write a .npy or .pt file for more"
        )


def save_images(path: Path, images: torch.Tensor, columns: int = 8) -> None:
    """Images [N, C, H, W] in [0, 1] as a PNG grid (in colour for C = 3), a .npy array or a .pt
    tensor, both [N, C, H, W] float32."""
    check_image_output(path, len(images))
    suffix = path.suffix.lower()
    if suffix == ".png":
        save_image_grid(path, images, columns)
    elif suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, images.contiguous().numpy(), allow_pickle=False)
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
        np.savez(buffer, codes=codes.numpy(), labels=labels.numpy())
    else:
        torch.save({"codes": codes.contiguous(), "labels": labels.contiguous()}, buffer)
    write_atomic(path, buffer.getvalue())
