"""The convolutional encoder and decoder bodies the conv models share: one stride-2 convolution
per width down to a feature map 2**len(widths) times smaller than the image's side, and back up.

The decoder upsamples by resizing (nearest neighbour, x2) and then convolving (3x3), after Odena
et al., "Deconvolution and checkerboard artifacts" (Distill, 2016): every output pixel is made
by the same number of kernel taps, so the decoder cannot print the checkerboard a transposed
convolution's uneven overlap gives (measured on colour emoji: high-frequency power of the
rebuilt images within 2x of the real images', see docs/lab/colour-images.md). A last 3x3
convolution at full resolution mixes the colours the upsampled features carry. Runs recorded
before this decoder keep their transposed convolutions (`upsample="transpose"`), so that their
weights still load.

Built as plain nn.Sequential so that each model keeps its own attribute names (`encoder`,
`decoder`) and so the names of its saved weights."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

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
        layers += [nn.Upsample(scale_factor=2.0), nn.Conv2d(wide, narrow, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(back[-1], channels, 3, padding=1))
