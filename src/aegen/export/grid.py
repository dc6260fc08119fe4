"""Image grids drawn without torchvision.

torchvision's make_grid and save_image would do, but importing torchvision imports torch's
compiler stack (torchvision.ops imports torch._dynamo): 1.3-1.6 s of a 7-s training run on a
2-core CPU, paid only to tile pictures (bench/startup.py). This is the same tiling, checked
pixel for pixel against torchvision's in tests/export/test_grid.py.
"""

from __future__ import annotations

import io
import math

import torch
from PIL import Image


def tile(
    images: torch.Tensor, columns: int, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Images [N, C, H, W] -> one image [C, rows*(H+padding)+padding, columns*(W+padding)+padding]
    with `columns` images per row (fewer if there are fewer images), `padding` pixels of
    `pad_value` around and between them, as torchvision's make_grid lays them out (one image
    is returned as it is, unpadded, as make_grid does)."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"a grid needs images [N, C, H, W] with N >= 1, got {tuple(images.shape)}")
    if len(images) == 1:
        return images[0]
    count, channels, height, width = images.shape
    across = min(columns, count)
    down = math.ceil(count / across)
    cell_h, cell_w = height + padding, width + padding
    grid = images.new_full(
        (channels, down * cell_h + padding, across * cell_w + padding), pad_value
    )
    for index, image in enumerate(images):
        top = (index // across) * cell_h + padding
        left = (index % across) * cell_w + padding
        grid[:, top : top + height, left : left + width] = image
    return grid


def grid_png(grid: torch.Tensor) -> bytes:
    """An image [C, H, W] in [0, 1] (C 1 or 3) as PNG bytes, gray or RGB, rounded to 8 bits as
    torchvision's save_image rounds."""
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue()
