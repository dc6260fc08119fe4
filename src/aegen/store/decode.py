"""Image files -> uint8 pixel arrays [H, W, C], with Pillow.

Kept free of torch (and of the rest of aegen) on purpose: worker processes import only this
module, so that starting one costs a Python start-up and Pillow, not torch's seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# The formats Pillow decodes that image folders hold; other files are not images to aegen.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})

# A decoded file: its pixels, or the reason it could not be read (kept as text, so that a
# worker's failure crosses the process boundary without pickling an exception).
Decoded = np.ndarray | str


def natural_channels(mode: str) -> int:
    """1 for Pillow's grayscale modes, 3 for every colour mode (alpha is dropped)."""
    return 1 if mode in GRAYSCALE_MODES else 3


def decode_file(path: str, size: int | None, channels: int | None) -> Decoded:
    """One file's pixels [H, W, C] in uint8, converted to `channels` (None: the file's own,
    1 or 3) and, when size is given, resized so its shorter side is `size` and centre-cropped
    to size x size. A file Pillow cannot read gives the reason as a string instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                wanted = channels or natural_channels(image.mode)
                mode = "L" if wanted == 1 else "RGB"
                if size is not None:
                    image.draft(mode, (size, size))  # JPEG: decode at a reduced scale already
                image.load()
                pixels = _converted(image, mode)
    except (
        OSError,
        ValueError,
        SyntaxError,  # Pillow's parsers raise it for some malformed headers
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return reason[:200]
    if size is not None:
        pixels = _square(pixels, size)
    array = np.asarray(pixels, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _converted(image: Image.Image, mode: str) -> Image.Image:
    """The image in mode L or RGB; 16-bit and float grayscale are scaled to 0..255 first."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") and values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, as an image viewer shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == mode else image.convert(mode)


def _square(image: Image.Image, size: int) -> Image.Image:
    """Shorter side resized to size (bicubic, antialiased), then the centre size x size."""
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def decode_files(paths: list[str], size: int | None, channels: int | None) -> list[Decoded]:
    """decode_file over a list: one task of a worker process."""
    return [decode_file(path, size, channels) for path in paths]


def image_files(folder: Path) -> list[Path]:
    """The image files under folder by extension, hidden files and folders left out, sorted."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)
