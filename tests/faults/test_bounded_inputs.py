"""Inputs are sized before anything is allocated: an array header that claims more than its
file holds, a JPEG past the decompression-bomb limit, model options too large for the memory
there is, a config.json edited to describe a larger model than its weights. Each is one line,
exit 2, and leaves no folder and no cache file behind."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aegen.cli import main
from aegen.data.decode import jpeg_pixels


def cli(capsys, *argv) -> tuple[int, str]:
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def lying_npy(shape: tuple[int, ...], dtype: str = "uint8") -> bytes:
    """A .npy header that claims `shape`, followed by 64 bytes of data."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, dtype))
    header["shape"] = shape
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + bytes(64)


def assert_refused(status: int, err: str, *words: str) -> None:
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_an_npy_header_claiming_a_terabyte_is_refused_before_allocation(capsys, tmp_path):
    array = tmp_path / "big.npy"
    array.write_bytes(lying_npy((10**6, 1000, 1000)))
    status, err = cli(capsys, "train", "ae", "--dataset", array, "--out", tmp_path / "run")
    assert_refused(status, err, "claims an array of shape (1000000, 1000, 1000)", "192 bytes")
    assert not (tmp_path / "run").exists()


def test_an_npz_whose_labels_claim_a_trillion_entries_is_refused(capsys, tmp_path):
    images = io.BytesIO()
    np.save(images, np.zeros((8, 28, 28), np.uint8))
    array = tmp_path / "big.npz"
    with zipfile.ZipFile(array, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", images.getvalue())
        archive.writestr("labels.npy", lying_npy((10**12,), "int64"))
    status, err = cli(capsys, "train", "ae", "--dataset", array, "--out", tmp_path / "run")
    assert_refused(status, err, "labels.npy", "(1000000000000,)")
    assert not (tmp_path / "run").exists()


def test_an_honest_array_too_large_for_the_memory_free_is_one_line(capsys, tmp_path, monkeypatch):
    """A few MB of deflated zeros may hold gigabytes of images: sized from the header against
    the memory free (here pretended to be 1 MiB) before numpy inflates them."""
    from aegen.data import own_images

    array = tmp_path / "zeros.npz"
    np.savez_compressed(array, images=np.zeros((300, 28, 28), np.uint8))
    monkeypatch.setattr(own_images, "free_memory", lambda: 2**20)
    out = tmp_path / "run"
    status, err = cli(capsys, "train", "ae", "--dataset", array, "--out", out)
    assert_refused(status, err, "0.2 MiB of arrays", "1.6 MiB, more than the 1.0 MiB free here")
    assert not out.exists()


def test_an_honest_npz_still_loads(capsys, tmp_path):
    array = tmp_path / "small.npz"
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez_compressed(array, images=images, labels=np.arange(40) % 2)
    status, _ = cli(capsys, "train", "ae", "--dataset", array, "--epochs", 1, "--quiet",
                    "--out", tmp_path / "run")  # fmt: skip
    assert status == 0


def bomb_jpeg(width: int, height: int) -> bytes:
    """An 8x8 JPEG whose frame header says width x height."""
    stream = io.BytesIO()
    Image.new("L", (8, 8)).save(stream, "JPEG")
    data = bytearray(stream.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 7] = height.to_bytes(2, "big")
    data[frame + 7 : frame + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_jpeg_pixels_reads_the_frame_header():
    for size, options in [((28, 28), {}), ((640, 480), {}), ((30, 20), {"progressive": True})]:
        stream = io.BytesIO()
        Image.new("RGB", size).save(stream, "JPEG", **options)
        assert jpeg_pixels(stream.getvalue()) == size[0] * size[1]
    assert jpeg_pixels(bomb_jpeg(20000, 20000)) == 400_000_000
    assert jpeg_pixels(b"not a jpeg") is None


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header says width x height RGB, holding one row of zeros."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(b"\0" * (3 * width + 1))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# 400 million pixels: past Pillow's own refusal; 100 million: past its warning (89 million),
# which aegen takes as the limit of both decoders.
BOMBS = [("jpg", bomb_jpeg, 20000), ("jpg", bomb_jpeg, 10000), ("png", bomb_png, 10000)]


@pytest.mark.parametrize(("suffix", "make", "side"), BOMBS)
def test_a_decompression_bomb_is_refused_from_its_header(capsys, tmp_path, suffix, make, side):
    folder = tmp_path / "bomb"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.{suffix}").write_bytes(make(side, side))
    cache = Path.home() / ".cache" / "aegen"  # the isolated HOME of the tests
    before = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    status, err = cli(capsys, "train", "ae", "--dataset", folder, "--out", tmp_path / "run")
    assert_refused(status, err, "decompression")
    assert "Warning" not in err
    assert not (tmp_path / "run").exists()
    after = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    assert after - before < 2**20  # nothing decoded into the cache


@pytest.mark.parametrize(
    "option, words",
    [
        ("latent_dim=100000000000000000000", ["cannot build vae"]),
        ("hidden_dim=2000000", ["parameters: training needs", "GiB"]),
        ("importance_samples=10000000", ["for one training step of 128 images"]),
    ],
)
def test_model_options_too_large_for_the_memory_are_one_line(capsys, tmp_path, option, words):
    out = tmp_path / "run"
    status, err = cli(capsys, "train", "vae", "--option", option, "--epochs", 1, "--out", out)
    assert_refused(status, err, *words)
    assert not out.exists()


def test_the_size_check_counts_the_peak_of_a_checkpoint_not_only_adam():
    """A VAE with hidden_dim 200,000 (326 million parameters) peaked at 17.4 GB at its first
    checkpoint: refused with 15 GiB free, which weights, gradients and moments alone (4.9 GiB)
    would have let through."""
    from aegen.errors import ConfigError
    from aegen.training.model_for_data import check_model_size

    with pytest.raises(ConfigError, match="326,"):
        check_model_size("vae", {"hidden_dim": 200_000}, None, 300, memory=15 * 2**30)
    check_model_size("vae", {"hidden_dim": 200_000}, None, 300, memory=17 * 2**30)


def test_a_config_edited_to_a_larger_model_is_refused_before_it_is_built(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", "vae", "--epochs", 1, "--quiet", "--out", run_dir)[0] == 0
    config = json.loads((run_dir / "config.json").read_text())
    config["model_config"]["hidden_dim"] = 200_000
    (run_dir / "config.json").write_text(json.dumps(config))
    status, err = cli(capsys, "sample", run_dir, "-n", 4, "--out", tmp_path / "s.png")
    assert_refused(status, err, "tensor 'fc1.weight' has shape (400, 784)", "needs (200000, 784)")
