"""A convolutional autoencoder with a deterministic code, the body of the autoencoders that
generate without a posterior (RAE, WAE, AAE): each adds its own penalty on the codes or the
decoder to the same reconstruction error.

The reconstruction error is the squared error summed over pixels in [0, 1] (per image, averaged
over the batch), the cost these papers use; the decoder ends in a sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from aegen.models.base import Autoencoder, ModelConfig, option
from aegen.models.conv_nets import check_conv_sizes, conv_decoder, conv_encoder, upsample_option


@dataclass
class CodeAEConfig(ModelConfig):
    """Image size (divisible by 4), channels, the two conv widths and the code size."""

    model: ClassVar[str] = "this model"  # named in error messages
    hidden_channels: tuple[int, ...] = option((32, 64), "channels of the two stride-2 convolutions")
    latent_dim: int = option(16, "numbers in the code")
    upsample: str = upsample_option()

    def check(self) -> None:
        super().check()
        check_conv_sizes(self.model, self.image_size, self.hidden_channels, self.upsample)


class ConvCodeAE(Autoencoder):
    """Conv(4, s2) x2 -> linear code; linear -> (resize x2, conv 3x3) x2 -> conv 3x3 -> sigmoid.
    Subclasses give the loss (reconstruction_error plus their penalty)."""

    value_range = (0.0, 1.0)

    config: CodeAEConfig

    def __init__(self, config: CodeAEConfig):
        super().__init__(config)
        c, widths = config.channels, config.hidden_channels
        wide, side = widths[-1], config.image_size // 2 ** len(widths)
        self.image_shape = (c, config.image_size, config.image_size)
        self.latent_dim = config.latent_dim
        self.feature_shape = (wide, side, side)
        features = wide * side * side
        self.encoder = conv_encoder(c, widths)
        self.fc_code = nn.Linear(features, config.latent_dim)
        self.fc_decode = nn.Linear(config.latent_dim, features)
        self.decoder = conv_decoder(widths, c, config.upsample)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc_code(self.encoder(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, C, H, W] of the images of codes [B, latent_dim]."""
        return self.decoder(F.relu(self.fc_decode(z)).view(-1, *self.feature_shape))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [*self.fc_decode.parameters(), *self.decoder.parameters()]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.fc_code.parameters()]


def reconstruction_error(rebuilt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each image's pixels, averaged over the batch."""
    return (rebuilt - x).pow(2).sum() / len(x)
