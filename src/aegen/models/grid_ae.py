"""A conv autoencoder to a code grid at a quarter of the image's side, with a prior over the
grids trained after it: what vq-vae and ldm share (their subclasses give the code and the prior).

The encoder is the conv models' two stride-2 convolutions and a 1x1 convolution to the code's
channels; a 1x1 convolution widens the grid again for the conv decoder; the sigmoid gives the
image. The run trains in two stages (Autoencoder.stages): the autoencoder ("autoencoder":
encoder, widening, decoder) first, the prior ("prior") on its finished codes for the last
`prior_share` of the epochs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aegen.models.base import Autoencoder, ModelConfig, Stage, two_stages
from aegen.models.conv_nets import conv_decoder, conv_encoder


class GridAutoencoder(Autoencoder):
    """Conv encoder (`hidden_channels`, then `encoder_channels` at side/4), 1x1 widening of the
    `code_channels` grid back to the decoder; the subclass adds `self.prior`, a module."""

    value_range = (0.0, 1.0)
    learned_prior = True
    prior: nn.Module

    def __init__(
        self,
        config: ModelConfig,
        hidden_channels: tuple[int, ...],
        code_channels: int,
        encoder_channels: int,
        prior_share: float,
    ):
        super().__init__(config)
        (narrow, wide), c, side = hidden_channels, config.channels, config.image_size // 4
        self.prior_share = prior_share
        self.image_shape = (c, config.image_size, config.image_size)
        self.grid_shape = (code_channels, side, side)
        self.latent_dim = code_channels * side * side
        self.encoder = nn.Sequential(
            *conv_encoder(c, narrow, wide)[:-1], nn.Conv2d(wide, encoder_channels, 1)
        )
        self.expand = nn.Conv2d(code_channels, wide, 1)
        self.decoder = conv_decoder(wide, narrow, c)

    @property
    def default_sampler(self) -> str:
        return "prior"  # the model's own

    @property
    def graphable(self) -> bool:
        return False  # two update groups and buffers updated eagerly (codebook, code statistics)

    def stages(self, epochs: int) -> list[Stage]:
        return two_stages(epochs, self.prior_share)

    def update_groups(self) -> dict[str, list[nn.Parameter]]:
        autoencoder = [*self.encoder.parameters(), *self.expand.parameters()]
        return {
            "autoencoder": [*autoencoder, *self.decoder.parameters()],
            "prior": list(self.prior.parameters()),
        }

    def _logits(self, grid: torch.Tensor) -> torch.Tensor:
        """Pixel logits [B, C, H, W] of code grids [B, code_channels, side, side]."""
        return self.decoder(F.relu(self.expand(grid)))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self._logits(z.view(-1, *self.grid_shape)))
