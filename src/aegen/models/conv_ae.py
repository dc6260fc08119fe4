"""The convolutional autoencoder: 16 and 8 channels down to an 8x2x2 code, ConvTranspose back up.

At 28x28 it is the article's network exactly. Other sizes (multiples of 16: 32, 48, 64, ...) use
the same two convolutions and pools with stride 2 throughout, down to an 8 x S/16 x S/16 code
(8x2x2 at 32 px), and back up in four doublings: by default each a nearest-neighbour resize and a
3x3 convolution, which cannot print a checkerboard (conv_nets.py says why; `upsample transpose`:
four stride-2 transposed convolutions, as runs recorded before that option were built).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import Autoencoder, LossOutput, ModelConfig, option
from aegen.models.conv_nets import UPSAMPLINGS, resize_conv, upsample_option


@dataclass
class ConvAEConfig(ModelConfig):
    """Channel counts; at 28 px strides and kernels are the article's (28 -> 10 -> 5 -> 3 -> 2)."""

    hidden_channels: tuple[int, ...] = option(
        (16, 8), "channels of the two convolutions; the code is the second x 2 x 2 (28, 32 px)"
    )
    upsample: str = upsample_option()  # sizes other than 28: the article's layout has its own

    def check(self) -> None:
        super().check()
        if self.image_size != 28 and self.image_size % 16:
            raise ConfigError(
                "conv-ae takes 28 px images (the article's layout) or a multiple of 16 "
                f"(32, 48, 64, ...), got {self.image_size}"
            )
        if len(self.hidden_channels) != 2:
            raise ConfigError("conv-ae needs two hidden channel counts")
        if self.upsample not in UPSAMPLINGS:
            raise ConfigError(f"upsample is one of {', '.join(UPSAMPLINGS)}, got {self.upsample!r}")


class ConvAE(Autoencoder):
    """Conv(s3) 16x10x10 -> pool 16x5x5 -> Conv(s2) 8x3x3 -> pool 8x2x2; ConvTranspose back."""

    config_class = ConvAEConfig

    value_range = (-1.0, 1.0)
    default_weight_decay = 1e-5
    channels_last = True  # epochs 1.1-1.2x faster so on the CPU, in every sitting (bench/)

    config: ConvAEConfig

    def __init__(self, config: ConvAEConfig | None = None):
        config = config or ConvAEConfig()
        super().__init__(config)
        c, (wide, narrow) = config.channels, config.hidden_channels
        side = config.image_size
        self.image_shape = (c, side, side)
        self.code_shape = (narrow, 2, 2) if side == 28 else (narrow, side // 16, side // 16)
        self.latent_dim = narrow * self.code_shape[1] * self.code_shape[2]
        if side == 28:
            self.encoder, self.decoder = _article_layers(c, wide, narrow)
        else:
            self.encoder, self.decoder = _stride_two_layers(c, wide, narrow, config.upsample)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z.view(-1, *self.code_shape))

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        mse = F.mse_loss(self(x), x)
        return LossOutput(mse, {})


def _article_layers(c: int, wide: int, narrow: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The article's encoder and decoder for 28x28 images."""
    encoder = nn.Sequential(
        nn.Conv2d(c, wide, 3, stride=3, padding=1),  # -> wide x 10 x 10
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),  # -> wide x 5 x 5
        nn.Conv2d(wide, narrow, 3, stride=2, padding=1),  # -> narrow x 3 x 3
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1),  # -> narrow x 2 x 2
    )
    decoder = nn.Sequential(
        nn.ConvTranspose2d(narrow, wide, 3, stride=2),  # -> wide x 5 x 5
        nn.ReLU(),
        nn.ConvTranspose2d(wide, narrow, 5, stride=3, padding=1),  # -> narrow x 15 x 15
        nn.ReLU(),
        nn.ConvTranspose2d(narrow, c, 2, stride=2, padding=1),  # -> c x 28 x 28
        nn.Tanh(),
    )
    return encoder, decoder


def _stride_two_layers(
    c: int, wide: int, narrow: int, upsample: str
) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder and decoder for S x S images, S a multiple of 16: each layer halves or doubles."""
    encoder = nn.Sequential(
        nn.Conv2d(c, wide, 3, stride=2, padding=1),  # -> wide x S/2
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),  # -> wide x S/4
        nn.Conv2d(wide, narrow, 3, stride=2, padding=1),  # -> narrow x S/8
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),  # -> narrow x S/16
    )
    if upsample == "transpose":
        decoder = nn.Sequential(
            nn.ConvTranspose2d(narrow, wide, 4, stride=2, padding=1),  # -> wide x S/8
            nn.ReLU(),
            nn.ConvTranspose2d(wide, wide, 4, stride=2, padding=1),  # -> wide x S/4
            nn.ReLU(),
            nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1),  # -> narrow x S/2
            nn.ReLU(),
            nn.ConvTranspose2d(narrow, c, 4, stride=2, padding=1),  # -> c x S
            nn.Tanh(),
        )
        return encoder, decoder
    layers: list[nn.Module] = []
    for a, b in ((narrow, wide), (wide, wide), (wide, narrow), (narrow, narrow)):
        layers += [*resize_conv(a, b), nn.ReLU()]
    return encoder, nn.Sequential(*layers, nn.Conv2d(narrow, c, 3, padding=1), nn.Tanh())
