"""aegen's image grids: torchvision's make_grid and save_image pixel for pixel, without importing
torchvision (which imports torch's compiler stack)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from aegen.export.grid import grid_png, tile


@pytest.mark.parametrize(
    ("count", "columns", "channels"), [(1, 8, 1), (2, 8, 1), (10, 4, 1), (64, 8, 3)]
)
@pytest.mark.parametrize(("padding", "pad_value"), [(0, 1.0), (1, 0.5), (2, 1.0)])
def test_tiling_is_torchvisions(count, columns, channels, padding, pad_value):
    images = torch.rand(count, channels, 7, 5, generator=torch.Generator().manual_seed(count))
    ours = tile(images, columns, padding=padding, pad_value=pad_value)
    theirs = make_grid(images, nrow=columns, padding=padding, pad_value=pad_value)
    assert torch.equal(ours.expand(3, -1, -1), theirs)  # torchvision makes gray images RGB


@pytest.mark.parametrize("channels", [1, 3])
def test_png_pixels_are_save_images(channels):
    grid = tile(torch.rand(6, channels, 9, 9, generator=torch.Generator().manual_seed(1)), 3)
    theirs = io.BytesIO()
    save_image(grid, theirs, format="png")
    ours = np.asarray(Image.open(io.BytesIO(grid_png(grid))))
    expected = np.asarray(Image.open(theirs))
    if channels == 1:
        assert ours.ndim == 2  # a gray grid is written as a gray PNG
        expected = expected[:, :, 0]
    assert np.array_equal(ours, expected)


def test_no_images_is_refused():
    with pytest.raises(ValueError, match="N >= 1"):
        tile(torch.zeros(0, 1, 4, 4), 8)
