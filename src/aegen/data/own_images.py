"""A user's own images: a folder of image files or a .npy/.npz array, as one uint8 tensor.

A folder's sub-folders are its classes (the ImageFolder convention: sorted names); a flat
folder is unlabelled. Files are decoded once, by a few threads when there are many (the
decoders release the GIL; threads, unlike worker processes, never re-run a user's unguarded
script), and the result is cached under a key made of the files' names, sizes and modification
times and of the requested size, channels and background (the colour transparent pixels are
composited over): a second run on the same folder starts at once.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from aegen.data import decode
from aegen.data.background import DEFAULT_BACKGROUND, RGB, background_rgb
from aegen.data.image_set import ImageSet
from aegen.errors import AegenError, DataError, first_line
from aegen.files.cache import cache_root
from aegen.files.memory import free_memory
from aegen.files.tensors import load_tensors, save_tensors

log = logging.getLogger("aegen")

DECODER_VERSION = 2  # part of the cache key: a change to decoding makes old entries unused
PARALLEL_FROM = 512  # fewer files are decoded by this thread alone
CHUNK = 128  # files per thread task
MAX_THREADS = 4
ARRAY_SUFFIXES = (".npy", ".npz")


def is_path(dataset: str) -> bool:
    """Whether a --dataset value looks like a folder or an array file (a built-in set's name
    means that set all the same: datasets.py asks first; ./NAME names a folder called NAME)."""
    return (
        os.sep in dataset
        or "/" in dataset
        or dataset.endswith(ARRAY_SUFFIXES)
        or Path(dataset).expanduser().exists()
    )


def load_own_images(
    path: str,
    image_size: int | None,
    channels: int | None,
    background: str = DEFAULT_BACKGROUND,
) -> ImageSet:
    """The images of a folder or .npy/.npz file, at the requested size and channels, the
    transparent pixels of a folder's images composited over the background colour."""
    rgb = background_rgb(background)  # an unknown colour before any file is read
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"{source} does not exist (give an image folder or a .npy/.npz file)")
    resolved = source.resolve()
    if not resolved.is_dir() and not {source.suffix.lower(), resolved.suffix.lower()} & set(
        ARRAY_SUFFIXES
    ):  # the name as given counts: a link to a content-addressed blob has no suffix
        raise DataError(
            f"{source} is neither a folder of images nor a .npy/.npz array; "
            "give one of those or a built-in data set name"
        )
    return _load_cached(str(resolved), image_size, channels, rgb, _signature(resolved))


def _signature(source: Path) -> tuple:
    """What the in-process cache is keyed by: a folder's image files with their sizes and
    times, or a file's size and time."""
    if source.is_dir():
        return tuple(decode.image_files(source))
    stat = source.stat()
    return (stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_cached(
    path: str, image_size: int | None, channels: int | None, background: RGB, signature: tuple
) -> ImageSet:
    source = Path(path)
    if source.is_dir():
        return _load_folder(source, list(signature), image_size, channels, background)
    images, labels, classes = _load_array(source)
    images = fit_images(images, image_size, channels)
    return ImageSet(path, "train", images, labels, classes, content_digest(images, labels))


def content_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 of the pixels, their shape and the labels: what a run's split depends on."""
    hasher = hashlib.sha256(str(tuple(images.shape)).encode())
    hasher.update(images.contiguous().numpy().data)
    hasher.update(labels.contiguous().numpy().data)
    return hasher.hexdigest()


# --- folders ---------------------------------------------------------------------------------


def _load_folder(
    folder: Path,
    files: list[decode.ImageFile],
    image_size: int | None,
    channels: int | None,
    background: RGB,
) -> ImageSet:
    labels, classes = _folder_labels(folder, files)
    key = _cache_key(folder, files, image_size, channels, background)
    cached = _read_cache(key, len(files))
    if cached is not None:
        images, digest = cached
    else:
        images = _decode_all([f.path for f in files], image_size, channels, background)
        digest = content_digest(images, labels)
        _write_cache(key, images, folder, digest)
    return ImageSet(str(folder), "train", images, labels, classes, digest)


def _folder_labels(
    folder: Path, files: list[decode.ImageFile]
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Class indices of the files: sub-folders are classes, a flat folder has none (-1)."""
    if not files:
        raise DataError(
            f"{folder} holds no image files ({', '.join(sorted(decode.IMAGE_SUFFIXES))})"
        )
    parts = [Path(f.path).relative_to(folder).parts for f in files]
    top = [p for p in parts if len(p) == 1]
    nested = [p for p in parts if len(p) > 1]
    if not nested:
        return torch.full((len(files),), -1), ()
    if top:
        raise DataError(
            f"{folder} holds images both at its top ({top[0][0]}) and in sub-folders "
            f"({Path(*nested[0])}); sub-folders are classes, so move the top ones into one, "
            "or keep a flat folder"
        )
    classes = tuple(sorted({p[0] for p in parts}))
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[0] != ".")
    empty = [name for name in folders if name not in classes]
    if empty:
        raise DataError(
            f"the class folder {folder / empty[0]} holds no images; remove it or add its images"
        )
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index[p[0]] for p in parts], dtype=torch.int64), classes


def _cache_key(
    folder: Path,
    files: list[decode.ImageFile],
    size: int | None,
    channels: int | None,
    background: RGB,
) -> str:
    """A name for the decoded tensor, "SOURCE-CONTENT": the first part names the folder and the
    flags (older entries of the same source are replaced; another background is another
    entry), the second changes whenever a file is added, removed or modified."""
    source = json.dumps([DECODER_VERSION, str(folder), size, channels, list(background)])
    entries = [[os.path.relpath(f.path, folder), f.size, f.mtime_ns] for f in files]
    content = hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:32]
    return f"{hashlib.sha256(source.encode()).hexdigest()[:16]}-{content}"


def _cache_path(key: str) -> Path:
    return cache_root() / "images" / f"{key}.safetensors"


def _read_cache(key: str, count: int) -> tuple[torch.Tensor, str] | None:
    """The cached images and their digest, or None (a damaged entry is decoded again)."""
    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        tensors, metadata = load_tensors(path)
    except AegenError as exc:
        log.warning(f"ignoring the damaged image cache {path} ({exc})")
        return None
    images = tensors.get("images")
    if images is None or images.dtype != torch.uint8 or images.dim() != 4 or len(images) != count:
        log.warning(f"ignoring the image cache {path}: it does not hold {count} images")
        return None
    return images, metadata.get("digest", "")


def _write_cache(key: str, images: torch.Tensor, folder: Path, digest: str) -> None:
    """Cache the decoded images, replacing the entry of an older state of the same folder."""
    path = _cache_path(key)
    try:
        for older in path.parent.glob(f"{key.split('-')[0]}-*.safetensors"):
            older.unlink(missing_ok=True)
        metadata = {"source": str(folder), "digest": digest}
        save_tensors(path, {"images": images}, metadata, durable=False)
    except OSError as exc:  # a read-only or full cache costs the next run a decode, no more
        log.warning(f"could not cache the decoded images in {path} ({exc})")


def _decode_all(
    paths: list[str], size: int | None, channels: int | None, background: RGB = decode.WHITE
) -> torch.Tensor:
    """Every file decoded into one uint8 tensor [N, C, H, W], by a few threads when there are
    enough files to pay for them. Each chunk is checked as it arrives, so an unreadable file or
    a size that disagrees stops the work at once (queued chunks are cancelled, Ctrl-C too)."""
    threads = min(os.cpu_count() or 1, MAX_THREADS)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    bar = tqdm(total=len(paths), desc="decoding images", unit="img", leave=False, disable=None)
    check = _ChunkCheck()
    with bar:
        if len(paths) < PARALLEL_FROM or threads < 2:
            for chunk in chunks:
                check(chunk, decode.decode_files(chunk, size, channels, background))
                bar.update(len(chunk))
            return torch.stack(check.images)
        if size is None and any(decode.is_fast(path) for path in paths):
            decode.jpeg_decoder()  # imported here, not by the workers at once (it can hang)
        pool = concurrent.futures.ThreadPoolExecutor(threads)
        try:
            tasks = [
                pool.submit(decode.decode_files, chunk, size, channels, background)
                for chunk in chunks
            ]
            for chunk, task in zip(chunks, tasks):
                check(chunk, task.result())
                bar.update(len(chunk))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return torch.stack(check.images)


class _ChunkCheck:
    """Collects decoded images, raising DataError (one line) at the first unreadable file or
    the first image whose size differs from the first one's. A folder that mixes gray and
    colour files (emoji sets hold a few gray-with-alpha icons among colour ones) is colour:
    its gray images are repeated over the three channels, as a viewer shows them."""

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []
        self.first_path = ""

    def __call__(self, paths: list[str], decoded: list[decode.Decoded]) -> None:
        for path, pixels in zip(paths, decoded):
            if isinstance(pixels, str):
                raise DataError(f"cannot read the image {path} ({pixels})")
            if not self.images:
                self.first_path = path
            elif pixels.shape[1:] != self.images[0].shape[1:]:
                raise DataError(
                    _disagreement(self.first_path, self.images[0].shape, path, pixels.shape)
                )
            elif pixels.shape[0] < self.images[0].shape[0]:  # gray among colour
                pixels = pixels.expand(3, -1, -1)
            elif pixels.shape[0] > self.images[0].shape[0]:  # the first colour one
                self.images = [image.expand(3, -1, -1) for image in self.images]
            self.images.append(pixels)


def _disagreement(a: str, a_shape: tuple, b: str, b_shape: tuple) -> str:
    (_, ha, wa), (_, hb, wb) = a_shape, b_shape
    return (
        f"the images differ in size ({a} is {wa}x{ha}, {b} is {wb}x{hb}); "
        "pass --image-size S to resize and centre-crop them all to SxS"
    )


# --- arrays ----------------------------------------------------------------------------------


def _load_array(path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images [N, C, H, W] uint8, labels and class names from a .npy or .npz file."""
    try:
        check_array_sizes(path)  # before numpy allocates what a header claims
        loaded = np.load(path, allow_pickle=False)
    except UNREADABLE as exc:
        raise DataError(f"cannot read the array file {path} ({_reason(exc)})") from exc
    if isinstance(loaded, np.ndarray):
        return _images_from_array(loaded, path), torch.full((len(loaded),), -1), ()
    with loaded:
        if "images" not in loaded.files:
            raise DataError(
                f"{path} has no array named 'images' (it holds "
                f"{', '.join(loaded.files) or 'none'}); save one with "
                "np.savez(path, images=..., labels=...)"
            )
        try:
            images = _images_from_array(loaded["images"], path)
            labels = loaded["labels"] if "labels" in loaded.files else None
            names = loaded["classes"] if "classes" in loaded.files else None
        except UNREADABLE as exc:  # a damaged member, or an object array (never unpickled)
            raise DataError(f"cannot read the array file {path} ({_reason(exc)})") from exc
    if labels is None:
        return images, torch.full((len(images),), -1), ()
    return images, *_checked_labels(labels, names, len(images), path)


ZIP_MOST_RATIO = 1032  # the most deflate can shrink data: a member holds at most this many times
# Memory a training takes per byte of its arrays (measured: 21 GB for 3.1 GB of uint8 images):
# the arrays read, their tensors and the float copies of the split.
MEMORY_PER_ARRAY_BYTE = 7


def check_array_sizes(path: Path) -> None:
    """Refuse a .npy (or an .npz member) whose header claims more data than the file holds:
    numpy allocates the claimed shape before it reads a byte (931 GiB for a 192-byte file);
    and arrays, honest or not, too large to train on in the memory free (a 3 MB .npz of zeros
    holds 3 GB of images, which training took 21 GB for)."""
    claimed = 0
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                ratio = 1 if info.compress_type == zipfile.ZIP_STORED else ZIP_MOST_RATIO
                with archive.open(info) as member:
                    room = min(info.file_size, info.compress_size * ratio)
                    claimed += _check_npy_header(member, room, f"{path} ({info.filename})")
    else:
        with open(path, "rb") as handle:
            claimed = _check_npy_header(handle, os.fstat(handle.fileno()).st_size, str(path))
    need, free = claimed * MEMORY_PER_ARRAY_BYTE, free_memory()
    if need > free:
        raise DataError(
            f"{path} holds {_size(claimed)} of arrays: training on them takes about "
            f"{_size(need)}, more than the {_size(free)} free here"
        )


def _size(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB" if count >= 2**30 else f"{count / 2**20:,.1f} MiB"


def _check_npy_header(stream: Any, size: int, where: str) -> int:
    """One .npy stream's header against the bytes there are (size: the whole stream's);
    returns the bytes it claims."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > size - stream.tell():
        raise DataError(
            f"{where} claims an array of shape {shape} ({claimed:,d} bytes) but holds "
            f"{size:,d} bytes: the file is damaged or not what it says"
        )
    return claimed


# What np.load and an .npz's members raise for a damaged file (or, ValueError, a pickle).
UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _reason(exc: BaseException) -> str:
    return first_line(exc, 200)


def _images_from_array(array: np.ndarray, path: Path) -> torch.Tensor:
    """[N, H, W], [N, H, W, C] or [N, C, H, W] (C 1 or 3), uint8 or float in [0, 1] -> uint8
    [N, C, H, W]."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        channels_first = array.shape[1] in (1, 3)
        channels_last = array.shape[3] in (1, 3)
        if channels_last and (not channels_first or array.shape[1] == array.shape[2]):
            array = array.transpose(0, 3, 1, 2)
        elif not channels_first:
            raise DataError(
                f"{path} holds images of shape {array.shape}: give [N, H, W], [N, H, W, C] "
                "or [N, C, H, W] with 1 or 3 channels"
            )
    else:
        raise DataError(
            f"{path} holds an array of {array.ndim} dimensions {array.shape}; images must be "
            "[N, H, W], [N, H, W, C] or [N, C, H, W]"
        )
    if len(array) == 0:
        raise DataError(f"{path} holds no images")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if array.dtype.kind != "f":
        raise DataError(
            f"{path} holds {array.dtype} pixels; give uint8 in 0..255 or floats in [0, 1]"
        )
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise DataError(f"{path} holds float pixels outside [0, 1] (or NaN); scale them to [0, 1]")
    return torch.from_numpy(np.rint(array.astype(np.float32) * 255).astype(np.uint8))


def _checked_labels(
    labels: np.ndarray, names: np.ndarray | None, count: int, path: Path
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Integer labels, one per image. With 'classes' (names), a label indexes them; without,
    the distinct label values, sorted, are the classes (so 3 and 7 become classes 0 and 1,
    named "3" and "7")."""
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(
            f"{path}: 'labels' must hold one integer per image ({count}), got shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu" or labels.min() < 0:
        raise DataError(f"{path}: 'labels' must be integers from 0, got {labels.dtype}")
    if names is None:
        values, index = np.unique(labels, return_inverse=True)
        return torch.from_numpy(index.astype(np.int64)), tuple(str(v) for v in values)
    if names.ndim != 1 or names.dtype.kind not in "US" or labels.max() >= len(names):
        raise DataError(
            f"{path}: 'classes' must hold one name per label value "
            f"({int(labels.max()) + 1} or more names)"
        )
    return torch.from_numpy(labels.astype(np.int64)), tuple(str(n) for n in names)


def fit_images(images: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """uint8 images [N, C, H, W] converted to `channels` and resized (shorter side to size,
    bicubic and antialiased) and centre-cropped to size x size, as folders are by decode.py."""
    images = decode.convert_channels(images, channels)
    if size is None or images.shape[2:] == (size, size):
        return images
    height, width = images.shape[2:]
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    chunks = []
    for chunk in images.split(1024):
        resized = F.interpolate(chunk.float(), new, mode="bicubic", antialias=True)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        crop = resized[:, :, top : top + size, left : left + size]
        chunks.append(crop.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks)
