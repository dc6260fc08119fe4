"""A user's own images: folders and arrays load into one uint8 tensor, are cached, and bad input
is one line naming the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from tinted import tinted, write_tinted_folder

from aegen.data import decode, own_images
from aegen.data.datasets import load_dataset
from aegen.data.own_images import fit_images
from aegen.errors import DataError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Every test decodes into its own cache, and starts with an empty in-process cache."""
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))
    own_images._load_cached.cache_clear()


@pytest.fixture
def digits():
    data = load_dataset("mnist-5k")
    index = torch.arange(0, 5000, 50)  # 100 digits, ten of each class
    return data.images[index], data.labels[index], data.classes


def png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_a_folder_of_class_folders_loads_as_labelled_colour_images(tmp_path, digits):
    folder = write_tinted_folder(*digits, tmp_path / "tinted")
    (folder / "notes.txt").write_text("not an image")
    png(folder / "3" / ".hidden.png", np.zeros((8, 8), np.uint8))  # hidden: ignored
    data = load_dataset(str(folder))
    assert data.images.shape == (100, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.classes == tuple(str(d) for d in range(10))
    assert torch.bincount(data.labels).tolist() == [10] * 10
    first = np.array(Image.open(folder / "0" / "00000.png"))
    assert torch.equal(data.images[0], torch.from_numpy(first).permute(2, 0, 1))
    assert data.labelled and data.image_shape == (3, 32, 32) and len(data.digest) == 64


def test_a_flat_folder_is_unlabelled(tmp_path, digits):
    folder = write_tinted_folder(*digits, tmp_path / "flat", flat=True)
    data = load_dataset(str(folder))
    assert len(data) == 100 and not data.labelled and (data.labels == -1).all()


def test_mixed_sizes_name_two_files_and_image_size_fixes_it(tmp_path):
    png(tmp_path / "f" / "a.png", np.zeros((32, 32), np.uint8))
    png(tmp_path / "f" / "b.png", np.full((48, 64), 200, np.uint8))
    with pytest.raises(DataError, match=r"a.png is 32x32, .*b.png is 64x48\); pass --image-size"):
        load_dataset(str(tmp_path / "f"))
    data = load_dataset(str(tmp_path / "f"), image_size=16)
    assert data.images.shape == (2, 1, 16, 16) and data.images[1].float().mean() == 200


def test_a_folder_mixing_gray_and_colour_images_is_colour(tmp_path):
    png(tmp_path / "f" / "a.png", np.full((8, 8), 40, np.uint8))
    png(tmp_path / "f" / "b.png", np.full((8, 8, 3), (200, 10, 90), np.uint8))
    png(tmp_path / "f" / "c.png", np.full((8, 8), 70, np.uint8))
    images = load_dataset(str(tmp_path / "f")).images
    assert images.shape == (3, 3, 8, 8)
    assert images[0].flatten(1).amax(1).tolist() == [40, 40, 40]  # gray on every channel
    assert images[1].flatten(1).amax(1).tolist() == [200, 10, 90]
    assert images[2].flatten(1).amin(1).tolist() == [70, 70, 70]
    assert load_dataset(str(tmp_path / "f"), channels=1).images.shape == (3, 1, 8, 8)


def test_resizing_keeps_the_centre(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # a white centre square between black side bands
    png(tmp_path / "f" / "a.png", wide)
    data = load_dataset(str(tmp_path / "f"), image_size=10, channels=1)
    assert data.images.shape == (1, 1, 10, 10) and data.images.float().mean() > 250


def test_a_truncated_png_is_named(tmp_path, digits):
    folder = write_tinted_folder(*digits, tmp_path / "tinted")
    victim = folder / "4" / "00041.png"
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cannot read the image .*4/00041.png \(") as caught:
        load_dataset(str(folder))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("empty", "holds no image files"),
        ("mixed", "holds images both at its top .* and in sub-folders"),
        ("missing", "does not exist"),
        ("text", "neither a folder of images nor a .npy/.npz array"),
    ],
)
def test_bad_folders_get_one_line(tmp_path, layout, message):
    target = tmp_path / "data"
    if layout == "empty":
        target.mkdir()
        (target / "readme.md").write_text("no images here")
    elif layout == "mixed":
        png(target / "top.png", np.zeros((8, 8), np.uint8))
        png(target / "cats" / "a.png", np.zeros((8, 8), np.uint8))
    elif layout == "text":
        target = tmp_path / "data.csv"
        target.write_text("1,2,3")
    with pytest.raises(DataError, match=message):
        load_dataset(str(target))


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((5, 12, 12), "NHW"),
        ((5, 12, 12, 3), "NHWC"),
        ((5, 3, 12, 12), "NCHW"),
        ((5, 1, 12, 12), ""),
    ],
)
def test_arrays_in_every_layout_come_out_nchw(tmp_path, shape, layout):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    data = load_dataset(str(tmp_path / "x.npy"))
    if layout == "NHW":
        expected = array[:, None]
    elif layout == "NHWC":
        expected = array.transpose(0, 3, 1, 2)
    else:
        expected = array
    assert torch.equal(data.images, torch.from_numpy(np.ascontiguousarray(expected)))


def test_float_arrays_in_unit_range_become_uint8_and_npz_labels_name_classes(tmp_path):
    images = np.linspace(0, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    np.savez(
        tmp_path / "d.npz", images=images, labels=np.array([0, 1, 1, 0]), classes=["cat", "dog"]
    )
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.images.dtype == torch.uint8 and data.images.max() == 255
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((2, 8, 8), np.uint8)}, "has no array named 'images'"),
        ({"images": np.zeros((2, 8), np.uint8)}, "2 dimensions"),
        ({"images": np.zeros((2, 8, 8), np.int32)}, "int32 pixels; give uint8"),
        ({"images": np.full((2, 8, 8), 2.0)}, r"outside \[0, 1\]"),
        ({"images": np.zeros((2, 8, 8, 5), np.uint8)}, "1 or 3 channels"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.zeros(3, int)}, "one integer per"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([0.5, 1])}, "integers"),
        ({"images": np.zeros((0, 8, 8), np.uint8)}, "holds no images"),
    ],
)
def test_bad_arrays_get_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npz"))


def test_arrays_are_never_unpickled(tmp_path, malicious_pickle):
    target = tmp_path / "pwned"
    (tmp_path / "evil.npy").write_bytes(malicious_pickle(target))
    with pytest.raises(DataError, match="cannot read the array file"):
        load_dataset(str(tmp_path / "evil.npy"))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="evil.npy|objects.npy"):
        load_dataset(str(tmp_path / "objects.npy"))
    assert not target.exists()


def test_a_second_load_reads_the_cache_and_a_changed_file_decodes_again(
    tmp_path, digits, monkeypatch
):
    folder = write_tinted_folder(*digits, tmp_path / "tinted")
    first = load_dataset(str(folder))
    own_images._load_cached.cache_clear()
    monkeypatch.setattr(own_images.decode, "decode_files", _must_not_decode)
    again = load_dataset(str(folder))
    assert torch.equal(first.images, again.images)
    assert again.digest == own_images.content_digest(first.images, first.labels)

    changed = folder / "7" / "00070.png"
    png(changed, np.zeros((32, 32, 3), np.uint8))
    os.utime(changed, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(str(folder))


def _must_not_decode(*args):
    raise AssertionError("decoded again")


def test_a_damaged_cache_entry_is_decoded_again(tmp_path, digits):
    folder = write_tinted_folder(*digits, tmp_path / "tinted")
    first = load_dataset(str(folder))
    (entry,) = (tmp_path / "cache" / "images").iterdir()
    entry.write_bytes(b"garbage")
    own_images._load_cached.cache_clear()
    assert torch.equal(load_dataset(str(folder)).images, first.images)


def test_decoding_threads_decode_what_one_thread_decodes(tmp_path, digits, monkeypatch):
    folder = tmp_path / "jpegs"
    for i, array in enumerate(tinted(*digits[:2])):
        png(folder / f"{i:03d}.jpg", array)
    monkeypatch.setattr(own_images, "PARALLEL_FROM", 10)
    monkeypatch.setattr(own_images, "CHUNK", 16)
    monkeypatch.setattr(own_images.os, "cpu_count", lambda: 2)
    paths = [f.path for f in decode.image_files(folder)]
    serial = torch.stack([decode._decode_pillow(p, None, None) for p in paths])
    assert torch.equal(own_images._decode_all(paths, None, None), serial)


def test_builtin_sets_take_image_size_and_channels():
    data = load_dataset("mnist-5k", image_size=32, channels=3)
    assert data.images.shape == (5000, 3, 32, 32) and data.classes == tuple("0123456789")
    assert torch.equal(data.images[:, 0], data.images[:, 2])


def test_fit_images_to_grayscale_uses_luma():
    red = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    red[:, 0] = 255
    assert fit_images(red, None, 1).unique().item() == round(0.299 * 255)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_both_decoders_give_pillows_pixels(tmp_path, digits, channels):
    suffix = ".jpg"  # the only format torchvision.io decodes here (PNG: Pillow, see decode.py)
    colour = tinted(digits[0][:4], digits[1][:4])
    gray = digits[0][:4].numpy()
    for i, array in enumerate([*colour, *gray]):
        path = tmp_path / f"{i}{suffix}"
        Image.fromarray(array).save(path)
        fast = decode._decode_fast(str(path), channels)
        slow = decode._decode_pillow(str(path), None, channels)
        assert fast is not None and isinstance(slow, torch.Tensor)
        assert torch.equal(fast, slow), (path, channels)


def test_transparency_is_drawn_over_white_and_16_bit_is_scaled(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "b.png")
    assert decode.decode_file(str(tmp_path / "a.png"), None, None).unique().tolist() == [255]
    deep = decode.decode_file(str(tmp_path / "b.png"), None, None)
    assert deep.shape == (1, 4, 4) and deep.unique().tolist() == [255]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path, suffix):
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, :10] = 255  # white on the left, black on the right
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    Image.fromarray(wide).save(tmp_path / f"a{suffix}", exif=exif)
    slow = decode._decode_pillow(str(tmp_path / f"a{suffix}"), None, None)
    fast = decode._decode_fast(str(tmp_path / f"a{suffix}"), None)
    assert isinstance(slow, torch.Tensor) and slow.shape == (3, 20, 10)
    assert slow[:, :10].float().mean() > 200 and slow[:, 10:].float().mean() < 50  # white on top
    assert (fast is None) == (suffix == ".png")  # PNG is Pillow's alone
    assert fast is None or torch.equal(fast, slow)


def test_damaged_pngs_are_named_and_never_crash(tmp_path, digits):
    original = png(tmp_path / "ok.png", tinted(*digits[:2])[0]).read_bytes()
    for position in range(40, len(original), max(1, len(original) // 40)):
        damaged = bytearray(original)
        damaged[position] ^= 0xFF
        path = tmp_path / "f" / "x.png"
        png(path, np.zeros((2, 2), np.uint8)).write_bytes(bytes(damaged))
        result = decode.decode_file(str(path), None, None)
        assert isinstance(result, (str, torch.Tensor))  # a reason or pixels, never a crash


def test_palette_and_gray_alpha_pngs_decode_as_pillow_converts_them(tmp_path):
    rng = np.random.default_rng(0)
    palette = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).quantize(16)
    palette.save(tmp_path / "p.png")
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode.decode_file(str(tmp_path / "p.png"), None, None), expected)
    Image.fromarray(np.full((4, 4, 2), [0, 0], np.uint8), "LA").save(tmp_path / "la.png")
    assert decode.decode_file(str(tmp_path / "la.png"), None, None).unique().tolist() == [255]


def test_a_damaged_npz_is_one_line(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", images=np.zeros((20, 8, 8), np.uint8))
    data = bytearray((tmp_path / "d.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "d.npz").write_bytes(bytes(data))
    (tmp_path / "t.npz").write_bytes(bytes(data[: len(data) // 2]))
    for name in ("d.npz", "t.npz"):
        with pytest.raises(DataError, match=f"cannot read the array file .*{name}"):
            load_dataset(str(tmp_path / name))


def test_linked_class_folders_are_followed_and_linked_arrays_load(tmp_path, digits):
    elsewhere = write_tinted_folder(*digits, tmp_path / "elsewhere")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "zeros").symlink_to(elsewhere / "0")
    (folder / "ones").symlink_to(elsewhere / "1")
    (folder / "ones" / "loop").symlink_to(folder)  # a cycle is walked once
    data = load_dataset(str(folder))
    assert data.classes == ("ones", "zeros") and len(data) == 20
    np.save(tmp_path / "blob", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "blob.npy").rename(tmp_path / "a1b2c3")  # content-addressed, no suffix
    (tmp_path / "images.npy").symlink_to(tmp_path / "a1b2c3")
    assert load_dataset(str(tmp_path / "images.npy")).images.shape == (3, 1, 4, 4)


def test_an_empty_class_folder_is_named(tmp_path, digits):
    folder = write_tinted_folder(*digits, tmp_path / "tinted")
    (folder / "zebra").mkdir()
    with pytest.raises(DataError, match="the class folder .*zebra holds no images"):
        load_dataset(str(folder))


def test_label_values_become_classes_in_order(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8), labels=[7, 3, 7, 3])
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.classes == ("3", "7") and data.labels.tolist() == [1, 0, 1, 0]
    np.savez(tmp_path / "e.npz", images=np.zeros((2, 8, 8), np.uint8), labels=[0, 5], classes=["a"])
    with pytest.raises(DataError, match="one name per label value"):
        load_dataset(str(tmp_path / "e.npz"))
