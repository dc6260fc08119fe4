"""Decoders that cannot print a checkerboard: every conv decoder aegen designed upsamples by
resizing and convolving, so a flat feature map decodes to a flat image (a transposed stride-2
convolution decodes it to a 2x2-periodic pattern, whatever its weights); runs recorded before
the `upsample` option keep their transposed convolutions and their weights load."""

from __future__ import annotations

import pytest
import torch

from aegen.models import build_model, build_recorded_model
from aegen.models.conv_nets import ResizeConv2d, conv_decoder
from aegen.models.grid_ae import grid_widths
from aegen.runs.config import read_run_config, write_run_config
from aegen.training.run import load, train

DESIGNED = ["conv-vae", "rae", "wae", "aae", "vae-gan", "vq-vae", "ldm"]


def interior_spread(decoder: torch.nn.Module, features: torch.Tensor) -> float:
    """The largest per-channel spread of the decoded image away from its borders (the zero
    padding's reach: at most 12 pixels for three doublings)."""
    with torch.no_grad():
        image = decoder(features)[..., 12:-12, 12:-12]
    return image.flatten(2).std(2).max().item()


def test_a_flat_feature_map_decodes_to_a_flat_image():
    torch.manual_seed(0)
    flat = torch.full((1, 64, 8, 8), 0.7)
    assert interior_spread(conv_decoder([32, 64], 3), flat) < 1e-6
    deeper = torch.full((1, 128, 8, 8), 0.7)
    assert interior_spread(conv_decoder([32, 64, 128], 3), deeper) < 1e-6
    # The transposed convolution's uneven overlap: a pattern of period 2 from the same input.
    assert interior_spread(conv_decoder([32, 64], 3, "transpose"), flat) > 1e-3


def test_resize_conv_equals_resizing_then_convolving_and_loads_their_weights():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(5, 6, 3, padding=1).double()
    fused = ResizeConv2d(5, 6).double()
    fused.load_state_dict(plain.state_dict())  # the same names: saved runs load unchanged
    x = torch.randn(3, 5, 7, 9, dtype=torch.float64, requires_grad=True)
    wanted = plain(torch.nn.functional.interpolate(x, scale_factor=2.0))
    got = fused(x)
    assert got.shape == wanted.shape == (3, 6, 14, 18)
    assert torch.allclose(got, wanted, atol=1e-12)
    pull = torch.randn_like(wanted)
    for a, b in zip(
        torch.autograd.grad(wanted, (x, plain.weight, plain.bias), pull),
        torch.autograd.grad(got, (x, fused.weight, fused.bias), pull),
    ):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", DESIGNED)
def test_every_designed_decoder_resizes_and_convolves(name):
    model = build_model(name, {"image_size": 32, "channels": 3})
    kinds = {type(m).__name__ for m in model.decoder.modules()}
    assert "ResizeConv2d" in kinds and "ConvTranspose2d" not in kinds
    assert model.decode(torch.zeros(2, model.latent_dim)).shape == (2, 3, 32, 32)


def test_the_articles_conv_ae_keeps_its_transposed_convolutions():
    model = build_model("conv-ae")
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder) == 3
    assert sum(p.numel() for p in model.parameters()) == 5729
    larger = build_model("conv-ae", {"image_size": 32, "channels": 3})
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in larger.decoder)


def test_the_grid_models_code_grid_follows_the_image_size():
    assert grid_widths(28) == grid_widths(32) == (32, 64)
    assert grid_widths(64) == (32, 64, 128) and grid_widths(128) == (32, 64, 128, 128)
    assert build_model("ldm", {"image_size": 32, "channels": 3}).grid_shape == (4, 8, 8)
    wide = build_model("ldm", {"image_size": 64, "channels": 3, "hidden_channels": [32, 64, 128]})
    assert wide.grid_shape == (4, 8, 8)


def test_a_run_recorded_before_the_upsample_option_loads_its_weights(tmp_path):
    options = {"hidden_channels": [8, 16], "latent_dim": 4, "upsample": "transpose"}
    run = train("conv-vae", "mnist-5k", epochs=1, out=tmp_path / "old", model_options=options)
    config = read_run_config(run.run_dir)
    del config.model_config["upsample"]  # as aegen wrote it before the option
    write_run_config(run.run_dir, config)
    again = load(run.run_dir)
    assert again.model.config.upsample == "transpose"
    codes = torch.randn(3, 4)
    assert torch.equal(again.decode(codes), run.decode(codes))
    fresh = build_recorded_model("conv-vae", {"hidden_channels": [8, 16], "upsample": "resize"})
    assert fresh.config.upsample == "resize"  # recorded values win over the old meaning


def test_an_unknown_upsampling_is_refused_in_one_line():
    with pytest.raises(Exception, match="upsample is one of resize, transpose, got 'bilinear'"):
        build_model("ldm", {"upsample": "bilinear"})
