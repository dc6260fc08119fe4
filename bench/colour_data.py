"""Colour data folders for development and for the README's measurements, made from packages.

Nothing this script makes is committed: every image stays under --out (default
/tmp/aegen-colour). It builds:

- emoji-google/, emoji-twitter/: the 64 px PNGs of the npm packages emoji-datasource-google and
  emoji-datasource-twitter, as shipped (RGBA, and palette PNGs with transparency among
  Twitter's), one sub-folder per emoji.json category (made folder-safe: "People & Body" is
  people-body), one file per emoji that has the set's image, named by its short name (skin-tone
  variants left out: they repeat their base emoji).
- emoji-google-split/, emoji-twitter-split/: the same images as train/<category>/ and
  heldout/<category>/: in each category, names sorted, the 1st, 11th, 21st, ... image is held
  out (every 10th; starting with the first puts every category in both halves).
- openmoji/<group>/: the colour PNGs of the npm package openmoji, where the package holds PNGs
  (72 px in its release files; the npm package 17.0.0 holds SVGs only, and is then skipped
  with one line).
- patches32.npy, patches64.npy (uint8 [N, H, W, 3]) and patches32-jpeg/, patches64-jpeg/
  (<photo>/<index>.jpg, quality 95): non-overlapping, centred grids of 32 and 64 px patches of
  the colour photographs scikit-image ships (astronaut, chelsea, coffee, rocket, the Hubble
  deep field, immunohistochemistry, retina, the left motorcycle of the stereo pair); flat
  patches (pixel standard deviation under 2: the black around the retina) are left out.

Packages are fetched with `npm pack NAME` into a temporary folder and the tarball is kept in
OUT/npm/, so that a rerun needs no network. Each output is built in a hidden temporary folder
and renamed into place when complete, so a rerun skips what exists and finishes what an
interrupted run left undone (delete an output to rebuild it). scikit-image is a tool of this
script only, not a dependency of aegen: `.venv/bin/pip install scikit-image`.

    .venv/bin/python bench/colour_data.py [--out /tmp/aegen-colour]

Prints one line per output: its count, image size and size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

EMOJI_SETS = ("google", "twitter")
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",  # the left image of the pair
)
PATCH_SIZES = (32, 64)
FLAT_STD = 2.0  # a patch whose pixels vary less than this is background, not photo
HELD_OUT_EVERY = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/aegen-colour"))
    out = parser.parse_args().out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in EMOJI_SETS:
        emoji_folders(out, name)
    openmoji_folder(out)
    for size in PATCH_SIZES:
        patches(out, size)


# --- npm packages ----------------------------------------------------------------------------


def npm_tarball(out: Path, package: str) -> Path:
    """The package's tarball, from OUT/npm/ or else fetched with `npm pack` and kept there."""
    cache = out / "npm"
    cached = sorted(p for p in cache.glob(f"{package}-*.tgz") if _is_version_of(p, package))
    if cached:
        return cached[-1]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            ["npm", "pack", package, "--pack-destination", scratch, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (fetched,) = Path(scratch).glob("*.tgz")
        return Path(shutil.move(str(fetched), cache / fetched.name))


def _is_version_of(tarball: Path, package: str) -> bool:
    """Whether NAME-VERSION.tgz is this package's (emoji-datasource-google-16.0.0.tgz)."""
    return re.fullmatch(rf"{re.escape(package)}-\d[^/]*\.tgz", tarball.name) is not None


def tar_files(tarball: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The files of a tarball whose names `wanted` accepts, read in one pass."""
    found = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if member.isfile() and wanted(member.name):
                handle = archive.extractfile(member)
                assert handle is not None
                found[member.name] = handle.read()
    return found


def folder_safe(text: str) -> str:
    """A folder name: lower case, runs of anything but letters and digits as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "other"


# --- emoji -----------------------------------------------------------------------------------


def emoji_folders(out: Path, emoji_set: str) -> None:
    """OUT/emoji-SET/<category>/<name>.png and OUT/emoji-SET-split/{train,heldout}/..."""
    flat, split = out / f"emoji-{emoji_set}", out / f"emoji-{emoji_set}-split"
    if not (flat.is_dir() and split.is_dir()):
        package = f"emoji-datasource-{emoji_set}"
        tarball = npm_tarball(out, package)
        prefix = f"package/img/{emoji_set}/64/"
        files = tar_files(tarball, lambda n: n == "package/emoji.json" or n.startswith(prefix))
        entries = json.loads(files["package/emoji.json"])
        images = emoji_images(entries, emoji_set, files, prefix)
        _build(flat, lambda tmp: _write_all(tmp, images), source=tarball.name)
        _build(split, lambda tmp: _write_split(tmp, images), source=tarball.name)
    summarize(flat)
    summarize(split / "train", f"{split.name}/train")
    summarize(split / "heldout", f"{split.name}/heldout")


def emoji_images(
    entries: list[dict], emoji_set: str, files: dict[str, bytes], prefix: str
) -> dict[str, bytes]:
    """category/name.png -> the PNG's bytes, for every entry that has the set's image."""
    images: dict[str, bytes] = {}
    for entry in entries:
        data = files.get(prefix + entry["image"])
        if not entry.get(f"has_img_{emoji_set}") or data is None:
            continue
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", entry["short_name"])  # "+1" is _1
        path = f"{folder_safe(entry['category'])}/{name}.png"
        if path in images:  # two short names made alike: the code point tells them apart
            path = path.replace(".png", f"-{entry['unified'].lower()}.png")
        images[path] = data
    return images


def _write_all(folder: Path, images: dict[str, bytes]) -> None:
    for path, data in images.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _write_split(folder: Path, images: dict[str, bytes]) -> None:
    """train/ and heldout/: per category, names sorted, every 10th from the first held out."""
    by_category: dict[str, list[str]] = {}
    for path in sorted(images):
        by_category.setdefault(path.split("/")[0], []).append(path)
    for paths in by_category.values():
        for i, path in enumerate(paths):
            half = "heldout" if i % HELD_OUT_EVERY == 0 else "train"
            _write_all(folder / half, {path: images[path]})


# --- openmoji --------------------------------------------------------------------------------


def openmoji_folder(out: Path) -> None:
    """OUT/openmoji/<group>/<hexcode>.png from the package's colour PNGs, where it has them."""
    folder = out / "openmoji"
    if folder.is_dir():
        summarize(folder)
        return
    tarball = npm_tarball(out, "openmoji")
    files = tar_files(
        tarball,
        lambda n: (
            n == "package/data/openmoji.json"
            or (n.startswith("package/color/") and n.endswith(".png"))
        ),
    )
    pngs = {name: data for name, data in files.items() if name.endswith(".png")}
    if not pngs:
        with tarfile.open(tarball, "r:gz") as archive:
            kinds = sorted({Path(n).suffix for n in archive.getnames() if "/color/" in n})
        print(
            f"openmoji: {tarball.name} holds no colour PNGs (color/ has {', '.join(kinds)}); skipped"
        )
        return
    sizes = sorted({name.split("/")[2] for name in pngs})  # package/color/72x72/1F600.png
    chosen = "72x72" if "72x72" in sizes else sizes[0]
    group = {
        entry["hexcode"]: folder_safe(entry["group"])
        for entry in json.loads(files["package/data/openmoji.json"])
    }
    images = {
        f"{group.get(Path(name).stem, 'other')}/{Path(name).name}": data
        for name, data in pngs.items()
        if name.split("/")[2] == chosen
    }
    _build(folder, lambda tmp: _write_all(tmp, images), source=tarball.name)
    summarize(folder)


# --- photo patches ---------------------------------------------------------------------------


def patches(out: Path, size: int) -> None:
    """OUT/patchesS.npy and OUT/patchesS-jpeg/<photo>/<index>.jpg."""
    array_path, folder = out / f"patches{size}.npy", out / f"patches{size}-jpeg"
    if not (array_path.is_file() and folder.is_dir()):
        cut = {name: photo_patches(photo(name), size) for name in PHOTOS}
        everything = np.concatenate(list(cut.values()))
        scratch = array_path.with_name(f".{array_path.name}.tmp")
        with open(scratch, "wb") as handle:
            np.save(handle, everything)
        os.replace(scratch, array_path)
        _build(folder, lambda tmp: _write_jpegs(tmp, cut), source="scikit-image data")
    array = np.load(array_path, mmap_mode="r")
    print(
        f"{array_path.name}: {len(array):,} patches {'x'.join(map(str, array.shape[1:]))} "
        f"{array.dtype}, {_megabytes(array_path.stat().st_size)} -> {array_path}"
    )
    summarize(folder)


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled colour photographs, uint8 [H, W, 3]."""
    from skimage import data  # a tool of this script only (see the docstring)

    image = getattr(data, name)()
    image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: left, right, ...
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def photo_patches(image: np.ndarray, size: int) -> np.ndarray:
    """The non-overlapping size x size patches of a centred grid, flat ones left out."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    top, left = (image.shape[0] - rows * size) // 2, (image.shape[1] - cols * size) // 2
    grid = image[top : top + rows * size, left : left + cols * size]
    cut = grid.reshape(rows, size, cols, size, 3).swapaxes(1, 2).reshape(-1, size, size, 3)
    return cut[cut.reshape(len(cut), -1).std(axis=1) >= FLAT_STD]


def _write_jpegs(folder: Path, cut: dict[str, np.ndarray]) -> None:
    for name, arrays in cut.items():
        (folder / name).mkdir(parents=True)
        for i, array in enumerate(arrays):
            Image.fromarray(array).save(folder / name / f"{i:05d}.jpg", quality=95)


# --- building and summing up -----------------------------------------------------------------


def _build(folder: Path, write: Callable[[Path], None], source: str) -> None:
    """Write a folder in a hidden temporary sibling and rename it into place when complete."""
    if folder.is_dir():
        return
    scratch = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(scratch, ignore_errors=True)  # what an interrupted run left
    scratch.mkdir(parents=True)
    write(scratch)
    (scratch / ".source").write_text(source + "\n")  # hidden: no image to aegen
    os.replace(scratch, folder)


def summarize(folder: Path, label: str | None = None) -> None:
    """One line: images, classes, their sizes and modes, bytes on disk, the path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    classes = {p.relative_to(folder).parts[0] for p in files if p.parent != folder}
    shapes: dict[str, int] = {}
    for path in files:
        with Image.open(path) as image:
            key = f"{image.width}x{image.height} {image.mode}"
            shapes[key] = shapes.get(key, 0) + 1
    kinds = ", ".join(f"{key} {count:,}" for key, count in sorted(shapes.items()))
    size = sum(p.stat().st_size for p in files)
    print(
        f"{label or folder.name}: {len(files):,} images in {len(classes)} classes ({kinds}), "
        f"{_megabytes(size)} -> {folder}"
    )


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


if __name__ == "__main__":
    main()
