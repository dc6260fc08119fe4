"""Pixel statistics of image sets (issue 29): high-frequency power share and colour fidelity."""

import math
import sys

import numpy as np
import pytest
import torch

from aegen.errors import ConfigError
from aegen.scoring.image_stats import (
    HF_CUTOFF,
    colour_errors,
    fidelity_protocol,
    hf_ratio,
    hf_share,
    high_frequency_power,
    reconstruction_fidelity,
    srgb_to_lab,
)


def checkerboard(n: int = 4, channels: int = 3, side: int = 32) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return ((rows + cols) % 2).float().expand(n, channels, side, side).clone()


def horizontal_ramp(n: int = 4, channels: int = 3, side: int = 32) -> torch.Tensor:
    return torch.linspace(0, 1, side).expand(n, channels, side, side).clone()


def test_checkerboard_has_all_its_power_above_the_cut():
    assert hf_share(checkerboard()) == pytest.approx(1.0)
    stripes = checkerboard()
    stripes[..., 1::2, :] = stripes[..., 0:1, :]  # columns alternate: power at (0.5, 0) only
    assert hf_share(stripes) == pytest.approx(1.0)


def test_smooth_images_have_almost_no_high_frequency_power():
    side = 32
    wave = 0.5 + 0.5 * torch.cos(2 * math.pi * torch.arange(side) / side)  # one period
    assert hf_share(wave.expand(4, 3, side, side)) == pytest.approx(0.0, abs=1e-12)
    # A linear ramp is a sawtooth to the periodic FFT: its wrap-around edge leaks about 2 %.
    assert hf_share(horizontal_ramp()) < 0.03


def high_band_share_of_grid(height: int, width: int) -> float:
    """Share of the non-DC DFT frequencies with max(|fy|, |fx|) > 3/8: white noise's hf_share."""
    fy, fx = np.abs(np.fft.fftfreq(height)), np.abs(np.fft.fftfreq(width))
    low = (fy <= 0.375).sum() * (fx <= 0.375).sum()  # the low band is a rectangle of the grid
    return (height * width - low) / (height * width - 1)  # the mean's bin (DC) holds nothing


def test_white_noise_share_is_the_area_share_of_the_high_band():
    assert high_band_share_of_grid(32, 32) == pytest.approx(399 / 1023)  # 1 - (25/32)^2, no DC
    g = torch.Generator().manual_seed(0)
    for height, width in [(32, 32), (28, 20)]:
        noise = torch.rand(300, 3, height, width, generator=g)
        assert hf_share(noise) == pytest.approx(high_band_share_of_grid(height, width), abs=0.01)


def test_hf_share_of_chunks_equals_that_of_the_whole_set():
    images = torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert hf_share(images.split(3)) == pytest.approx(hf_share(images), rel=1e-12)
    high, total = high_frequency_power(images)
    assert 0 < high < total and hf_share(images) == pytest.approx(high / total)


def test_flat_images_have_no_high_frequency_share():
    assert hf_share(torch.full((2, 3, 8, 8), 0.4)) == 0.0
    assert hf_ratio(torch.full((2, 1, 8, 8), 0.4), torch.zeros(2, 1, 8, 8)) == 1.0
    assert hf_ratio(checkerboard(), torch.zeros(2, 3, 32, 32)) == math.inf


def test_hf_ratio_is_the_share_over_the_reference_share():
    real = horizontal_ramp()
    assert hf_ratio(real, real) == pytest.approx(1.0)
    assert hf_ratio(checkerboard(), real) == pytest.approx(1.0 / hf_share(real))
    textured = horizontal_ramp() + 0.2 * (checkerboard() - 0.5)  # a faint checkerboard on it
    assert hf_ratio(textured.clamp(0, 1), real) > 2  # outside issue 29's bound
    assert hf_ratio(0.3, 0.1) == pytest.approx(3.0)  # shares already measured
    assert hf_ratio(checkerboard(), hf_share(real)) == hf_ratio(checkerboard(), real)


def test_cutoff_is_three_quarters_of_nyquist():
    assert HF_CUTOFF == 0.375


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 255, 0), (87.73, -86.18, 83.18)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
        ((128, 128, 128), (53.59, 0.0, 0.0)),
    ],
)
def test_srgb_to_lab_known_values(rgb, lab):
    pixel = torch.tensor(rgb, dtype=torch.float64).reshape(1, 3, 1, 1) / 255
    assert srgb_to_lab(pixel).flatten().tolist() == pytest.approx(lab, abs=0.01)


def test_colour_errors_are_zero_for_identical_sets():
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert colour_errors(images, images.clone()) == {"colour_error": 0.0, "delta_e": 0.0}


def test_colour_error_of_a_known_shift():
    grey = torch.full((3, 3, 8, 8), 0.5)
    redder = grey.clone()
    redder[:, 0] += 10 / 255
    errors = colour_errors(grey, redder)
    assert errors["colour_error"] == pytest.approx(10.0)
    lab_shift = srgb_to_lab(redder[:1, :, :1, :1]) - srgb_to_lab(grey[:1, :, :1, :1])
    assert errors["delta_e"] == pytest.approx(lab_shift.norm().item()) and errors["delta_e"] > 1


def test_gray_images_count_as_rgb_gray():
    grey = torch.full((2, 1, 4, 4), 0.5)
    errors = colour_errors(grey, grey + 10 / 255)
    assert errors["colour_error"] == pytest.approx(10 * math.sqrt(3))  # (10, 10, 10) in RGB
    lab = srgb_to_lab(torch.tensor([0.5, 0.5 + 10 / 255]).reshape(2, 1, 1, 1).expand(-1, 3, -1, -1))
    assert lab[:, 1:].abs().max() < 1e-4  # gray has a = b = 0: deltaE is the lightness error
    assert errors["delta_e"] == pytest.approx((lab[1, 0] - lab[0, 0]).item())


def test_reconstruction_fidelity_reports_psnr_ssim_and_colour():
    original = torch.full((4, 3, 16, 16), 0.5)
    original[..., ::2, :] = 0.3
    scores = reconstruction_fidelity(original, original + 0.1)
    assert set(scores) == {"psnr", "ssim", "colour_error", "delta_e"}
    assert scores["psnr"] == pytest.approx(20.0) and 0 < scores["ssim"] < 1
    assert scores["colour_error"] == pytest.approx(25.5 * math.sqrt(3))
    assert set(fidelity_protocol()) == {
        "hf_share",
        "hf_ratio",
        "psnr",
        "ssim",
        "colour_error",
        "delta_e",
    }


def test_fidelity_without_torchmetrics_leaves_ssim_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.functional.image", None)
    scores = reconstruction_fidelity(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    assert "ssim" not in scores and scores["psnr"] == 100.0
    assert "not installed" in fidelity_protocol()["ssim"]


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(3, 8, 8),  # no channel axis
        torch.zeros(0, 3, 8, 8),  # no images
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8),  # not in [0, 1] floats
        torch.full((2, 3, 8, 8), 2.0),  # outside [0, 1]
        torch.full((2, 3, 8, 8), float("nan")),
    ],
)
def test_bad_image_sets_are_refused(bad):
    with pytest.raises(ConfigError):
        hf_share(bad)
    with pytest.raises(ConfigError):
        colour_errors(bad, bad)


def test_mismatched_or_odd_sets_are_refused():
    with pytest.raises(ConfigError, match="one shape"):
        colour_errors(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9))
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        colour_errors(torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(ConfigError, match="empty"):
        hf_share([])
    with pytest.raises(ConfigError, match="RGB"):
        srgb_to_lab(torch.zeros(1, 1, 2, 2))
