"""Image files -> uint8 pixel tensors [C, H, W], C 1 or 3.

Two decoders give the same pixels (tests/data/test_own_images.py holds them to it): torchvision.io's
libjpeg-turbo binding for JPEG, 2-3x faster than Pillow on small images because it skips
Pillow's per-file Python work and releases the GIL (so threads decode in parallel), and Pillow
for everything else: other formats (PNG too: torchvision 0.29's PNG decoder crashes the process
on some damaged files), CMYK, resizing (its JPEG draft mode decodes a large photo at a reduced
scale straight away) and the reason a file cannot be read. torchvision 0.29 deprecates its
decoders in favour of TorchCodec; where a later torchvision has removed them, Pillow decodes
everything.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from aegen.data.background import DEFAULT_BACKGROUND, RGB, background_rgb
from aegen.errors import first_line

warnings.filterwarnings(
    "ignore",
    message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
)

# The formats Pillow decodes that image folders hold; other files are not images to aegen.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
FAST_SUFFIXES = frozenset({".jpg", ".jpeg"})  # decoded by torchvision.io where it can
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})

# A decoded file: its pixels, or the reason it could not be read.
Decoded = torch.Tensor | str


@dataclass(frozen=True)
class ImageFile:
    """An image file with the size and modification time that key the decoded cache."""

    path: str
    size: int
    mtime_ns: int


def image_files(folder: Path) -> list[ImageFile]:
    """The image files under folder by extension, hidden files and folders left out, sorted.
    Linked folders are followed, as torchvision's ImageFolder does, each real folder once."""
    found, seen = [], set()
    for parent, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: not an image file
                continue
            found.append(ImageFile(path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.path)


WHITE = background_rgb(DEFAULT_BACKGROUND)


def decode_file(
    path: str, size: int | None, channels: int | None, background: RGB = WHITE
) -> Decoded:
    """One file's pixels [C, H, W] in uint8, converted to `channels` (None: the file's own, 1 or
    3), its transparent pixels composited over `background` and, when size is given, resized so
    its shorter side is `size` and centre-cropped to size x size. A file that cannot be read
    gives the reason as a string instead."""
    if size is None:
        fast = _decode_fast(path, channels)  # a JPEG: never transparent
        if fast is not None:
            return fast
    return _decode_pillow(path, size, channels, background)


def is_fast(path: str) -> bool:
    """Whether torchvision.io decodes this file (a JPEG), where it has its decoders."""
    return os.path.splitext(path)[1].lower() in FAST_SUFFIXES


@functools.cache
def jpeg_decoder() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torchvision.io's decoder, imported on first use: importing torchvision imports torch's
    compiler stack (over a second on a small CPU), which only a folder of JPEGs needs. None
    where this torchvision has no image decoders. Called once from the main thread before
    decoding threads start (own_images.py): importing it from several threads at once hung."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # pragma: no cover - a torchvision without its image decoders
        return None
    return functools.partial(
        decode_image, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True
    )


def _decode_fast(path: str, channels: int | None) -> torch.Tensor | None:
    """torchvision.io's decoding of a gray or RGB JPEG, else None (Pillow then decodes it, and
    says why when it cannot: a truncated or damaged JPEG is refused by both)."""
    if not is_fast(path):
        return None
    decoder = jpeg_decoder()
    if decoder is None:
        return None
    try:
        with open(path, "rb") as handle:
            raw = bytearray(handle.read())
        if (jpeg_pixels(raw) or 0) > bomb_pixels():  # Pillow then refuses it, as any file
            return None
        pixels = decoder(torch.frombuffer(raw, dtype=torch.uint8))
    except (OSError, RuntimeError, ValueError):
        return None
    if pixels.dtype != torch.uint8 or pixels.dim() != 3 or pixels.shape[0] not in (1, 3):
        return None  # CMYK and the like: Pillow's rules apply
    return convert_channels(pixels.unsqueeze(0), channels)[0]


def bomb_pixels() -> int:
    """The most pixels aegen decodes from one file: Pillow's MAX_IMAGE_PIXELS (89 million),
    past which Pillow warns of a decompression bomb (it refuses only past twice that). One
    limit for both decoders, checked from the header."""
    return Image.MAX_IMAGE_PIXELS or 2**62


# JPEG's start-of-frame markers, which hold the image's height and width (not DHT, JPG, DAC).
_START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_pixels(data: bytes | bytearray) -> int | None:
    """Width x height from a JPEG's frame header, read before anything is decoded; None where
    the markers before it are not well formed."""
    at = 2 if data[:2] == b"\xff\xd8" else len(data)
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers with no length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _START_OF_FRAME and at + 9 <= len(data):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width * height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        at += 2 + length
    return None


def _decode_pillow(
    path: str, size: int | None, channels: int | None, background: RGB = WHITE
) -> Decoded:
    try:
        with warnings.catch_warnings():  # aegen refuses past Pillow's warning itself, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            wanted = channels or natural_channels(image.mode)
            mode = "L" if wanted == 1 else "RGB"
            if size is not None:
                image.draft(mode, (size, size))  # JPEG: decode at a reduced scale already
            width, height = image.size  # from the header (after the draft: what is decoded)
            if width * height > bomb_pixels():
                return (
                    f"it is {width:,d} x {height:,d} pixels, more than the {bomb_pixels():,d} "
                    "aegen decodes from one file (Pillow's decompression-bomb limit)"
                )
            image.load()
            upright = ImageOps.exif_transpose(image)  # a photo as it is shown
            pixels = _converted(upright, mode, background)
    except (
        OSError,
        ValueError,
        SyntaxError,  # Pillow's parsers raise it for some malformed headers
        Image.DecompressionBombError,
    ) as exc:
        return first_line(exc, 200)
    if size is not None:  # after compositing: resampling RGBA would mix the hidden colour in
        pixels = _square(pixels, size)
    array = np.array(pixels, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def natural_channels(mode: str) -> int:
    """1 for Pillow's grayscale modes, 3 for every colour mode (alpha is composited away)."""
    return 1 if mode in GRAYSCALE_MODES else 3


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 images [N, C, H, W] with C 1 or 3 to `channels` (None: unchanged). To gray with
    Pillow's own integer ITU-R 601-2 luma, so both decoders give the same pixels."""
    if channels is None or channels == images.shape[1]:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    red, green, blue = images.int().unbind(1)
    luma = (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16
    return luma.unsqueeze(1).to(torch.uint8)


def _converted(image: Image.Image, mode: str, background: RGB) -> Image.Image:
    """The image in mode L or RGB, transparent pixels composited over background. 16-bit
    grayscale is scaled from 0..65535 to 0..255 (so is a 32-bit integer image, clipped there); a
    float image is taken to lie in [0, 1]."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" else 65535.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
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


def decode_files(
    paths: list[str], size: int | None, channels: int | None, background: RGB = WHITE
) -> list[Decoded]:
    """decode_file over a list: one task of a decoding thread."""
    return [decode_file(path, size, channels, background) for path in paths]
