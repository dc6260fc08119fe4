"""The variational autoencoder 784-400-20 (Kingma and Welling, 2014) with a Bernoulli decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import Autoencoder, LossOutput, require_positive


@dataclass
class VAEConfig:
    """Widths, and the weight on the KL term (1.0 is the plain VAE; other values give a beta-VAE)."""

    image_size: int = 28
    channels: int = 1
    hidden_dim: int = 400
    latent_dim: int = 20
    kl_weight: float = 1.0

    def check(self) -> None:
        require_positive(self)
        if self.kl_weight < 0:
            raise ConfigError(f"kl_weight must be >= 0, got {self.kl_weight}")


class BernoulliVAE(Autoencoder):
    """A VAE with a Gaussian posterior and a Bernoulli decoder; subclasses give the networks.

    A subclass defines posterior(x) -> (mu, logvar) and decode_logits(z) -> [..., pixels] and sets
    self.config.kl_weight; encoding, decoding and the loss are shared.
    """

    value_range = (0.0, 1.0)
    variational = True

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x), each [B, latent_dim]."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits [..., pixels] for codes [..., latent_dim]; sigmoid gives the image."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z)).view(-1, *self.image_shape)

    def loss(self, x: torch.Tensor) -> LossOutput:
        """BCE summed over pixels + kl_weight * KL(q(z|x) || N(0, I)), averaged over the batch."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparametrisation trick
        # BCE on logits equals BCE on the sigmoid output, without its log(0) at saturation.
        recon = F.binary_cross_entropy_with_logits(
            self.decode_logits(z), x.flatten(1), reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        loss = recon + self.config.kl_weight * kl
        return LossOutput(loss, {"recon": recon.detach(), "kl": kl.detach()})


class VAE(BernoulliVAE):
    """fc1 784-400 ReLU, heads 400-20 for mu and logvar; decoder 20-400 ReLU, 400-784 sigmoid."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        self.image_shape = (config.channels, config.image_size, config.image_size)
        self.latent_dim = config.latent_dim
        pixels = config.channels * config.image_size ** 2
        self.fc1 = nn.Linear(pixels, config.hidden_dim)
        self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc3 = nn.Linear(config.latent_dim, config.hidden_dim)
        self.fc4 = nn.Linear(config.hidden_dim, pixels)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z)))
