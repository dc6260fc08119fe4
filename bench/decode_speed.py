"""Images decoded per second: aegen's folder loader against a plain single-process Pillow loop.

Makes a folder of 20,000 64x64 JPEGs from real images (Fashion-MNIST training images tinted
per class and upscaled, when ../shared/data has them; else mnist-5k's digits, each used four
times with a different tint), then times, interleaved and repeated (best of --repeats):

- pillow loop: `np.asarray(Image.open(path).convert("RGB"))` for every file, then np.stack,
  the loop a user would write;
- aegen, decoding only: listing the folder and decoding every file into one tensor (threads,
  torchvision.io's decoders where they apply), the part that compares with the Pillow loop;
- aegen, first load: the whole call with an empty cache: decoding, the content digest runs
  check their data against, and writing the cache;
- aegen, cached: the same call again in a fresh in-process state, read from the cache.

    .venv/bin/python bench/decode_speed.py [--images 20000] [--repeats 3]

Prints a table and writes bench/decode-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from tinted import tinted  # noqa: E402  (tests/tinted.py: the per-class tint)

SHARED = ROOT.parent / "shared" / "data"


def make_folder(folder: Path, count: int) -> str:
    """count 64x64 JPEGs in ten class sub-folders; returns where the images came from."""
    from aegen.data.datasets import load_dataset

    if (SHARED / "FashionMNIST" / "raw").is_dir():
        data, source = load_dataset("fashion-mnist", "train", SHARED), "fashion-mnist train"
    else:
        data, source = load_dataset("mnist-5k"), "mnist-5k (each digit four times)"
    index = torch.arange(count) % len(data)
    labels = (data.labels[index] + index // len(data)) % 10  # another tint on each reuse
    pixels = tinted(data.images[index], labels)
    for i, (array, label) in enumerate(zip(pixels, data.labels[index].tolist())):
        target = folder / f"class-{label}" / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).resize((64, 64), Image.Resampling.BICUBIC).save(target, quality=90)
    return source


def pillow_loop(folder: Path) -> np.ndarray:
    files = sorted(folder.rglob("*.jpg"))
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files])


def aegen_decode(folder: Path) -> torch.Tensor:
    from aegen.data import decode, own_images

    paths = [f.path for f in decode.image_files(folder)]
    return own_images._decode_all(paths, None, None)


def aegen_load(folder: Path, cache: Path) -> torch.Tensor:
    from aegen.data import own_images

    os.environ["AEGEN_CACHE"] = str(cache)
    own_images._load_cached.cache_clear()
    return own_images.load_own_images(str(folder), None, None).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "jpegs"
        source = make_folder(folder, args.images)
        names = ("pillow loop", "aegen, decoding only", "aegen, first load", "aegen, cached")
        best = dict.fromkeys(names, float("inf"))
        reference = pillow_loop(folder)  # also warms the page cache for every contender
        for repeat in range(args.repeats):
            cache = Path(scratch) / f"cache-{repeat}"
            for name in best:
                start = time.perf_counter()
                if name == "pillow loop":
                    result = torch.from_numpy(pillow_loop(folder)).permute(0, 3, 1, 2)
                elif name == "aegen, decoding only":
                    result = aegen_decode(folder)
                else:
                    result = aegen_load(folder, cache)
                best[name] = min(best[name], time.perf_counter() - start)
                assert torch.equal(result, torch.from_numpy(reference).permute(0, 3, 1, 2))
    rows = [
        {"method": name, "seconds": seconds, "images_per_second": args.images / seconds}
        for name, seconds in best.items()
    ]
    baseline = best["pillow loop"]
    print(f"{args.images:,d} 64x64 JPEGs from {source}; best of {args.repeats}, interleaved")
    print(f"{'method':<20} {'seconds':>8} {'images/s':>10} {'vs Pillow loop':>15}")
    for row in rows:
        print(
            f"{row['method']:<20} {row['seconds']:>8.2f} {row['images_per_second']:>10,.0f} "
            f"{baseline / row['seconds']:>14.2f}x"
        )
    out = Path(__file__).with_name("decode-cpu.json")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    out.write_text(
        json.dumps(
            {"images": args.images, "source": source, "machine": machine, "rows": rows}, indent=2
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
