"""A colour image folder made from real grayscale data: each class tinted its own colour.

No colour data set ships offline here, so tests (and the README's example) build one: every
28x28 image is padded to 32x32, multiplied by its class's colour and written as a PNG into a
sub-folder named after its class. Run as a script to make the README's folder:

    python tests/tinted.py --dataset fashion-mnist --split test --out tinted-fashion
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# One colour per class (RGB in [0, 1]), far enough apart for a classifier to use.
TINTS = np.array(
    [
        [1.00, 0.25, 0.25],
        [0.25, 1.00, 0.25],
        [0.30, 0.45, 1.00],
        [1.00, 1.00, 0.25],
        [1.00, 0.30, 1.00],
        [0.25, 1.00, 1.00],
        [1.00, 0.60, 0.20],
        [0.65, 0.35, 1.00],
        [0.60, 1.00, 0.55],
        [1.00, 1.00, 1.00],
    ]
)


def tinted(images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """uint8 images [N, 28, 28] -> uint8 RGB [N, 32, 32, 3], each tinted by its class."""
    gray = np.pad(images.numpy().astype(np.float64) / 255.0, ((0, 0), (2, 2), (2, 2)))
    colour = TINTS[labels.numpy() % len(TINTS)][:, None, None, :]
    return np.rint(gray[..., None] * colour * 255.0).astype(np.uint8)


def write_tinted_folder(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    out: Path,
    flat: bool = False,
) -> Path:
    """Write PNGs into out/CLASS/NNNNN.png (or out/NNNNN.png when flat); returns out."""
    pixels = tinted(images, labels)
    for i, (array, label) in enumerate(zip(pixels, labels.tolist())):
        folder = out if flat else out / classes[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{i:05d}.png")
    return out


def main() -> None:
    from aegen.data.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-n", type=int, default=None, help="first N images only")
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.split, args.data_root)
    n = args.n or len(data)
    write_tinted_folder(data.images[:n], data.labels[:n], data.classes, args.out)
    print(f"wrote {n} tinted 32x32 PNGs of {args.dataset} {args.split} into {args.out}")


if __name__ == "__main__":
    main()
