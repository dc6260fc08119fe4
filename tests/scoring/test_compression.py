"""Rate-distortion primitives: code sizes, the 8-bit quantiser, distortion scores, PCA and JPEG."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from aegen.data.datasets import load_dataset
from aegen.data.pixels import unit_images
from aegen.errors import ConfigError
from aegen.scoring.compression import (
    SSIM_SOURCE,
    STORAGES,
    UniformQuantiser,
    code_bits,
    distortion,
    jpeg_round_trip,
    pca_round_trip,
    stored,
)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """200 real MNIST digits, uint8 [200, 28, 28]."""
    return load_dataset("mnist-5k").images[:200]


def test_code_bits_known_sizes():
    assert code_bits(3, "float32") == 96
    assert code_bits(32, "uint8") == 256
    assert code_bits(10, "float16") == 160
    assert STORAGES == ("float32", "float16", "uint8")


def test_code_bits_unknown_storage_names_the_choices():
    with pytest.raises(ConfigError, match="float32, float16, uint8"):
        code_bits(3, "int4")


def test_quantiser_round_trip_within_half_a_step():
    torch.manual_seed(0)
    train = torch.randn(1000, 8) * torch.linspace(0.1, 10, 8)
    quantiser = UniformQuantiser().fit(train)
    levels = quantiser.quantise(train)
    assert levels.dtype == torch.uint8 and levels.shape == (1000, 8)
    assert levels.min() == 0 and levels.max() == 255  # the range's ends are levels 0 and 255
    step = (train.max(0).values - train.min(0).values) / 255
    error = (quantiser.dequantise(levels) - train).abs()
    assert quantiser.dequantise(levels).dtype == torch.float32
    assert (error <= step / 2 + 1e-5).all()


def test_quantiser_clamps_to_the_fitted_range():
    quantiser = UniformQuantiser().fit(torch.tensor([[0.0], [1.0]]))
    levels = quantiser.quantise(torch.tensor([[-5.0], [0.25], [7.0]]))
    assert levels.flatten().tolist() == [0, 64, 255]  # 0.25 * 255 = 63.75 rounds to 64
    assert quantiser.dequantise(levels).flatten().tolist() == pytest.approx([0.0, 64 / 255, 1.0])


def test_quantiser_constant_dimension():
    train = torch.stack([torch.full((50,), 2.5), torch.linspace(-1, 1, 50)], dim=1)
    quantiser = UniformQuantiser().fit(train)
    back = quantiser.dequantise(quantiser.quantise(train))
    assert torch.isfinite(back).all()
    assert (back[:, 0] == 2.5).all()


def test_quantiser_must_be_fitted():
    with pytest.raises(ConfigError):
        UniformQuantiser().quantise(torch.zeros(2, 3))


def test_stored_each_storage():
    torch.manual_seed(1)
    codes = torch.randn(100, 16)
    assert torch.equal(stored(codes, "float32", None), codes)
    half = stored(codes, "float16", None)
    assert half.dtype == torch.float32 and not torch.equal(half, codes)
    assert torch.allclose(half, codes, rtol=2**-11, atol=2**-25)  # 11 significant bits
    quantiser = UniformQuantiser().fit(codes)
    eight = stored(codes, "uint8", quantiser)
    assert torch.equal(eight, quantiser.dequantise(quantiser.quantise(codes)))
    with pytest.raises(ConfigError, match="quantiser"):
        stored(codes, "uint8", None)
    with pytest.raises(ConfigError):
        stored(codes, "bfloat16", None)


def test_distortion_identical_images(digits):
    images = unit_images(digits[:20])
    scores = distortion(images, images.clone())
    assert scores == {"mse": 0.0, "psnr": 100.0, "ssim": pytest.approx(1.0, abs=1e-5)}


def test_distortion_known_perturbation():
    original = torch.full((4, 1, 28, 28), 0.5)
    original[:, :, ::2] = 0.3  # stripes, so SSIM has structure to compare
    scores = distortion(original, original + 0.1)
    assert scores["mse"] == pytest.approx(0.01)
    assert scores["psnr"] == pytest.approx(20.0)
    assert 0.0 < scores["ssim"] < 1.0


def test_distortion_psnr_is_the_mean_over_images():
    original = torch.zeros(2, 1, 8, 8)
    rebuilt = original.clone()
    rebuilt[1] += 0.1  # image 0 exact (capped at 100 dB), image 1 at 20 dB
    assert distortion(original, rebuilt)["psnr"] == pytest.approx(60.0)


def test_distortion_ssim_on_images_smaller_than_the_window():
    torch.manual_seed(2)
    for shape in [(3, 1, 1, 1), (3, 3, 4, 5), (3, 1, 28, 3)]:
        images = torch.rand(shape)
        assert distortion(images, images)["ssim"] == pytest.approx(1.0, abs=1e-5)
        assert distortion(images, (images * 0.5).clamp(0, 1))["ssim"] < 1.0


def test_distortion_shape_mismatch():
    with pytest.raises(ConfigError, match="one shape"):
        distortion(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9))


def test_distortion_without_torchmetrics_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.functional.image", None)
    with pytest.raises(ConfigError, match=r"aegen\[compression\]"):
        distortion(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_source_names_library_and_settings():
    assert "torchmetrics" in SSIM_SOURCE and "data_range=1.0" in SSIM_SOURCE


def test_pca_more_components_rebuild_better(digits):
    train, test = digits[:150], digits[150:]
    truth = unit_images(test)
    errors = [distortion(truth, pca_round_trip(train, test, k))["mse"] for k in (2, 10, 50)]
    assert errors[0] > errors[1] > errors[2]
    rebuilt = pca_round_trip(train, test, 10)
    assert rebuilt.shape == (50, 1, 28, 28) and rebuilt.dtype == torch.float32
    assert rebuilt.min() >= 0 and rebuilt.max() <= 1


def test_pca_all_components_is_exact(digits):
    rebuilt = pca_round_trip(digits, digits, len(digits))
    assert (rebuilt - unit_images(digits)).abs().max() < 1e-4


def test_pca_too_many_components(digits):
    with pytest.raises(ConfigError, match="from 1 to 200"):
        pca_round_trip(digits, digits, 201)


def test_jpeg_higher_quality_more_bits_less_error(digits):
    images = digits[:10]
    truth = unit_images(images)
    low, low_bits = jpeg_round_trip(images, 10)
    high, high_bits = jpeg_round_trip(images, 90)
    assert low.shape == high.shape == (10, 1, 28, 28) and low.dtype == torch.float32
    assert high_bits > low_bits
    assert distortion(truth, high)["mse"] < distortion(truth, low)["mse"]


def test_jpeg_bits_are_the_real_file_size(digits):
    images = digits[:5]
    _, bits = jpeg_round_trip(images, 75)
    sizes = []
    for image in images.numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=75)
        sizes.append(len(buffer.getvalue()))
    assert bits == pytest.approx(8 * np.mean(sizes))
    _, one = jpeg_round_trip(images[:1], 75)
    assert one == 8 * sizes[0]


def test_jpeg_colour_images():
    torch.manual_seed(3)
    images = (torch.rand(2, 3, 16, 16) * 255).to(torch.uint8)
    rebuilt, bits = jpeg_round_trip(images, 95)
    assert rebuilt.shape == (2, 3, 16, 16)
    assert bits > 0 and not math.isnan(bits)


def test_jpeg_quality_out_of_range(digits):
    for quality in (0, 96):
        with pytest.raises(ConfigError, match="1 to 95"):
            jpeg_round_trip(digits[:1], quality)
