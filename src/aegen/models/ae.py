"""The fully-connected autoencoder 784-128-64-12-3: a 3-d code that can be plotted as it is."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aegen.models.base import Autoencoder, LossOutput, ModelConfig, option


@dataclass
class AEConfig(ModelConfig):
    """Layer widths of the encoder; the decoder mirrors them and ends in Tanh (data in [-1, 1])."""

    hidden_dims: tuple[int, ...] = option(
        (128, 64, 12), "widths of the encoder's hidden layers (mirrored by the decoder)"
    )
    latent_dim: int = option(3, "numbers in the code")

    def check(self) -> None:
        super().check()


def _mlp(widths: list[int]) -> list[nn.Module]:
    """Linear layers through widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return layers


class FullyConnectedAE(Autoencoder):
    """Encoder 784-128-64-12-3 with ReLU; decoder 3-12-64-128-784 with ReLU and a final Tanh."""

    config_class = AEConfig

    value_range = (-1.0, 1.0)
    default_weight_decay = 1e-5

    config: AEConfig

    def __init__(self, config: AEConfig | None = None):
        config = config or AEConfig()
        super().__init__(config)
        self.image_shape = (config.channels, config.image_size, config.image_size)
        self.latent_dim = config.latent_dim
        widths = [config.channels * config.image_size**2, *config.hidden_dims, config.latent_dim]
        self.encoder = nn.Sequential(*_mlp(widths))
        self.decoder = nn.Sequential(*_mlp(widths[::-1]), nn.Tanh())

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.image_shape)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        mse = F.mse_loss(self(x), x)
        return LossOutput(mse, {})
