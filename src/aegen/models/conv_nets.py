"""The convolutional encoder and decoder bodies the conv models share: two stride-2 convolutions
down to a feature map a quarter of the image's side, two transposed convolutions back up.

Built as plain nn.Sequential so that each model keeps its own attribute names (`encoder`,
`decoder`) and so the names of its saved weights."""

from __future__ import annotations

from torch import nn

from aegen.errors import ConfigError


def check_conv_sizes(model: str, image_size: int, hidden_channels: tuple[int, ...]) -> None:
    """The bodies halve the image twice, so its side must be divisible by 4; two widths."""
    if image_size % 4:
        raise ConfigError(
            f"{model} takes image sizes divisible by 4 (28, 32, 64, ...), got {image_size}"
        )
    if len(hidden_channels) != 2:
        raise ConfigError(f"{model} needs two hidden channel counts")


def conv_encoder(channels: int, narrow: int, wide: int) -> nn.Sequential:
    """Images [B, channels, S, S] -> features [B, wide * S/4 * S/4] (ReLU after each conv)."""
    return nn.Sequential(
        nn.Conv2d(channels, narrow, 4, stride=2, padding=1),
        nn.ReLU(),  # -> narrow x S/2 x S/2
        nn.Conv2d(narrow, wide, 4, stride=2, padding=1),
        nn.ReLU(),  # -> wide x S/4 x S/4
        nn.Flatten(),
    )


def conv_decoder(wide: int, narrow: int, channels: int) -> nn.Sequential:
    """Features [B, wide, S/4, S/4] -> logits [B, channels, S, S] (no output activation)."""
    return nn.Sequential(
        nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(narrow, channels, 4, stride=2, padding=1),
    )
