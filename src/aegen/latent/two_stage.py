"""`two-stage`: a second VAE fitted to the codes (Dai & Wipf, "Diagnosing and enhancing VAE
models", ICLR 2019), for every model, not only the VAE.

The first model's codes do not follow N(0, I) (a VAE's aggregate posterior has holes and
unused directions; a plain autoencoder's has no reason to be Gaussian at all). A second VAE of
the same dimension learns to map them to N(0, I) and back; its decoder is Gaussian with a learned
variance gamma, which Dai & Wipf show is what lets the second stage fit the codes closely (gamma
falls towards 0 as it does). Sampling: z ~ N(0, I), decoded to the mean of the second decoder.
The paper's networks are 3 x 1024 wide; 3 x 192 fit 54,000 codes within a CPU minute.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aegen.latent.code_fitting import CodeNetwork, FitSettings, NetworkSampler, mlp

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_GAMMA = -12.0  # keeps 1 / gamma finite once the decoder is nearly exact
START_LOG_GAMMA = -3.0  # from gamma = 1 the decoder first ignores z for ~1000 steps (measured)


class SecondStageVAE(CodeNetwork):
    """Encoder (code, label) -> mean and log-variance; decoder (z, label) -> code; log gamma."""

    def __init__(self, latent_dim: int, classes: int, hidden: int = 192, layers: int = 3):
        super().__init__(latent_dim, classes)
        self.encoder = mlp(latent_dim + classes, hidden, 2 * latent_dim, layers)
        self.decoder = mlp(latent_dim + classes, hidden, latent_dim, layers)
        self.log_gamma = nn.Parameter(torch.tensor(START_LOG_GAMMA))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, y], 1))

    def loss(self, u: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The negative ELBO per code, in nats per dimension."""
        mu, logvar = self.encoder(torch.cat([u, y], 1)).chunk(2, 1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        log_gamma = self.log_gamma.clamp_min(MIN_LOG_GAMMA)
        squared = (u - self.decode(z, y)).pow(2).sum(1)
        reconstruction = 0.5 * (
            squared * torch.exp(-log_gamma) + self.latent_dim * (log_gamma + LOG_2PI)
        )
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return (reconstruction + kl) / self.latent_dim


class TwoStageSampler(NetworkSampler):
    """Codes decoded by a second VAE from its own N(0, I) prior."""

    name = "two-stage"
    settings = FitSettings(max_steps=6000, learning_rate=2e-3)

    def build(self) -> SecondStageVAE:
        return SecondStageVAE(self.latent_dim, self.classes)

    def draw(self, n: int, generator: torch.Generator, y: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.network, SecondStageVAE)
        return self.network.decode(torch.randn(n, self.latent_dim, generator=generator), y)
