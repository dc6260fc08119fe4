"""The variational autoencoder 784-400-20 (Kingma and Welling, 2014) with a Bernoulli decoder,
and the loss every Bernoulli VAE shares: the ELBO, or the IWAE bound (Burda et al., 2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, cast

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import Autoencoder, LossOutput, ModelConfig, option
from aegen.models.bernoulli import bernoulli_nll

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig(ModelConfig):
    """Widths, the weight on the KL term (1.0 is the plain VAE; other values give a beta-VAE) and
    the importance samples of the objective (1: the ELBO; k > 1: the IWAE bound)."""

    hidden_dim: int = option(400, "width of the hidden layer of encoder and decoder")
    latent_dim: int = option(20, "numbers in the code")
    kl_weight: float = option(1.0, "weight of the KL term (1: the VAE; other values: a beta-VAE)")
    importance_samples: int = option(
        1, "posterior draws per image in the objective (1: ELBO; k > 1: IWAE)"
    )

    def check(self) -> None:
        super().check()
        check_objective(self)


def check_objective(config: ObjectiveOptions) -> None:
    """kl_weight >= 0; the IWAE bound has no KL term to weigh, so it needs kl_weight 1."""
    if config.kl_weight < 0:
        raise ConfigError(f"kl_weight must be >= 0, got {config.kl_weight}")
    if config.importance_samples > 1 and config.kl_weight != 1.0:
        raise ConfigError(
            "the IWAE objective (importance_samples > 1) has no KL term to weigh: "
            "leave kl_weight at 1"
        )


class ObjectiveOptions(Protocol):
    """The options BernoulliVAE.loss reads; the config of every subclass has them."""

    kl_weight: float
    importance_samples: int


class BernoulliVAE(Autoencoder):
    """A VAE with a Gaussian posterior and a Bernoulli decoder; subclasses give the networks.

    A subclass defines posterior(x) -> (mu, logvar) and decode_logits(z) -> [..., pixels] and sets
    self.config.kl_weight; encoding, decoding and the loss are shared.
    """

    value_range = (0.0, 1.0)
    variational = True
    pixel_likelihood = True  # log p(x|z) is Bernoulli over pixels: ELBO and NLL are defined
    # Decoded draws at a time in the NLL (latent.likelihood.log_weights): as many as keep the
    # decoder's activations in the CPU's cache. A fully connected decoder's are one row of
    # logits per draw (4096 rows: 12.8 MB); a convolutional one's are feature maps (ConvVAE).
    nll_rows = 4096

    def posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x), each [B, latent_dim]."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits [..., pixels] for codes [..., latent_dim] (any leading shape; labels
        [B] or [B, classes] match the last leading dimension); sigmoid gives the image."""
        raise NotImplementedError

    @property
    def has_kl_term(self) -> bool:
        return cast(ObjectiveOptions, self.config).importance_samples == 1  # IWAE: none

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for codes [..., latent_dim]: the standard normal's, unless the model has a
        prior of its own (the VampPrior)."""
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.posterior(x, labels)[0]

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z, labels)).view(-1, *self.image_shape)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        """BCE summed over pixels + kl_weight * KL(q(z|x) || N(0, I)), averaged over the batch;
        with importance_samples k > 1 the IWAE bound -log mean_i p(x, z_i) / q(z_i|x) instead."""
        mu, logvar = self.posterior(x, labels)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        options = cast(ObjectiveOptions, self.config)  # the subclass's config (see docstring)
        k = options.importance_samples
        if k == 1:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparametrisation trick
            # BCE on logits equals BCE on the sigmoid output, without its log(0) at saturation.
            recon = bernoulli_nll(self.decode_logits(z, labels), x.flatten(1)).sum() / len(x)
            loss = recon + (self.kl_scale * options.kl_weight) * kl
        else:
            eps = torch.randn(k, *mu.shape, dtype=mu.dtype, device=mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)  # [k, B, latent_dim]
            bce = bernoulli_nll(self.decode_logits(z, labels), x.flatten(1))  # [k, B]
            # log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x); the log(2 pi) terms cancel
            log_w = -bce - 0.5 * (z.pow(2) - eps.pow(2) - logvar).sum(-1)
            loss = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
            recon = bce.mean()
        return LossOutput(loss, {"recon": recon.detach(), "kl": kl.detach()})


class VAE(BernoulliVAE):
    """fc1 784-400 ReLU, heads 400-20 for mu and logvar; decoder 20-400 ReLU, 400-784 sigmoid."""

    config_class = VAEConfig

    config: VAEConfig

    def __init__(self, config: VAEConfig | None = None):
        config = config or VAEConfig()
        super().__init__(config)
        self.image_shape = (config.channels, config.image_size, config.image_size)
        self.latent_dim = config.latent_dim
        pixels = config.channels * config.image_size**2
        self.fc1 = nn.Linear(pixels, config.hidden_dim)
        self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc3 = nn.Linear(config.latent_dim, config.hidden_dim)
        self.fc4 = nn.Linear(config.hidden_dim, pixels)

    def posterior(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z)))
