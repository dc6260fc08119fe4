"""The convolutional encoder and decoder bodies the conv models share: one stride-2 convolution
per width down to a feature map 2**len(widths) times smaller than the image's side, and back up.

The decoder upsamples by resizing (nearest neighbour, x2) and then convolving (3x3), after Odena
et al., "Deconvolution and checkerboard artifacts" (Distill, 2016): every output pixel is made
by the same number of kernel taps, so the decoder cannot print the checkerboard a transposed
convolution's free, unevenly overlapping kernel gives (measured on colour emoji, see
docs/lab/colour-images.md). ResizeConv2d computes the same function without the resized copy,
in 4/9 of the multiply-adds. A last 3x3 convolution at full resolution mixes the colours the
upsampled features carry. Runs recorded before this decoder keep their transposed convolutions
(`upsample="transpose"`), so that their weights still load.

Built as plain nn.Sequential so that each model keeps its own attribute names (`encoder`,
`decoder`) and so the names of its saved weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import option

UPSAMPLINGS = ("resize", "transpose")


def upsample_option() -> str:
    """The `upsample` option of every conv model with a decoder designed here."""
    return option(
        "resize",
        "decoder upsampling: resize (nearest x2, then 3x3 conv: no checkerboard) or transpose "
        "(4x4 transposed conv: how runs recorded before this option were built)",
    )


# Which of a 3x3 kernel's rows (columns) feed each row (column) of the equivalent 4x4 kernel of
# a stride-2 transposed convolution (ResizeConv2d): taps 0-3 sum rows {2}, {1, 2}, {0, 1}, {0}.
TAP_SUMS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


class ResizeConv2d(nn.Conv2d):
    """A 3x3 convolution (padding 1) of its input resized x2 by nearest neighbour, computed as
    the one stride-2 transposed convolution it equals: the 4x4 kernel's taps are sums of the
    3x3 kernel's (TAP_SUMS), so each output pixel still gets 4 sums of the same 9 weights and
    no checkerboard can appear, but the resized copy is never made and each output pixel costs
    4 multiply-adds per channel pair instead of 9. Weights, bias and their names are the
    Conv2d's, so runs saved with nn.Upsample + nn.Conv2d load unchanged (equal to float
    rounding: tests/models/test_decoders.py)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = torch.tensor(TAP_SUMS, dtype=self.weight.dtype, device=self.weight.device)
        kernel = torch.einsum("kr,oirc,lc->iokl", taps, self.weight, taps)
        return F.conv_transpose2d(x, kernel, self.bias, stride=2, padding=1)


def resize_conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    """The layers of one resize-then-convolve step: an nn.Identity where the nn.Upsample was
    (so that the saved weights keep their names), then ResizeConv2d."""
    return [nn.Identity(), ResizeConv2d(in_channels, out_channels)]


def check_conv_sizes(
    model: str, image_size: int, hidden_channels: tuple[int, ...], upsample: str = "resize"
) -> None:
    """The bodies halve the image once per width (at least two), so its side must be divisible
    by 2**widths; the upsampling must be one aegen knows."""
    if len(hidden_channels) < 2:
        raise ConfigError(f"{model} needs at least two hidden channel counts")
    factor = 2 ** len(hidden_channels)
    if image_size % factor or image_size < factor:
        examples = [v for v in (28, 32, 64, 96, 128) if v % factor == 0][:3]
        layers = "" if len(hidden_channels) == 2 else f" (with {len(hidden_channels)} widths)"
        raise ConfigError(
            f"{model}{layers} takes image sizes divisible by {factor} "
            f"({', '.join(map(str, examples))}, ...), got {image_size}"
        )
    if upsample not in UPSAMPLINGS:
        raise ConfigError(f"upsample is one of {', '.join(UPSAMPLINGS)}, got {upsample!r}")


def conv_encoder(channels: int, widths: Sequence[int]) -> nn.Sequential:
    """Images [B, channels, S, S] -> features [B, widths[-1] * (S/2**n)**2], n = len(widths)
    (ReLU after each 4x4 stride-2 conv)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.Flatten())


def conv_decoder(widths: Sequence[int], channels: int, upsample: str = "resize") -> nn.Sequential:
    """Features [B, widths[-1], s, s] -> logits [B, channels, s * 2**n, s * 2**n] (no output
    activation); `widths` are the encoder's, walked back."""
    back = [*reversed(widths)]
    layers: list[nn.Module] = []
    if upsample == "transpose":
        for wide, narrow in zip(back, [*back[1:], channels]):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1), nn.ReLU()]
        return nn.Sequential(*layers[:-1])
    for wide, narrow in zip(back, [*back[1:], back[-1]]):
        layers += [*resize_conv(wide, narrow), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(back[-1], channels, 3, padding=1))
