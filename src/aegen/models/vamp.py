"""The VAE with the VampPrior (Tomczak & Welling, AISTATS 2018): the prior is the mixture of the
encoder's own posteriors at K learned pseudo-inputs, p(z) = (1/K) sum_k q(z | u_k), so that it
fits where the codes really are instead of pulling them to N(0, I).

The KL term has no closed form against a mixture: it is estimated with the posterior draw the
reconstruction uses, log q(z|x) - log p(z). Pseudo-inputs are images in [0, 1] (clamped, the
paper's hardtanh), initialised near 0.05 as in its MNIST experiments. The networks are the VAE
784-400-20's; the NLL is importance-sampled against this prior (log_prior), and the `prior`
sampler draws from the mixture (draw_prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from aegen.errors import ConfigError
from aegen.models.base import LossOutput, option
from aegen.models.bernoulli import bernoulli_nll
from aegen.models.vae import LOG_2PI, VAE, VAEConfig


@dataclass
class VampConfig(VAEConfig):
    """The VAE's widths and KL weight, and the number of pseudo-inputs of its prior."""

    pseudo_inputs: int = option(500, "learned pseudo-inputs whose posteriors make the prior")

    def check(self) -> None:
        super().check()
        if self.importance_samples != 1:
            raise ConfigError("vamp trains on the ELBO: leave importance_samples at 1")


def diagonal_mixture_log_density(
    z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor
) -> torch.Tensor:
    """log (1/K) sum_k N(z; means_k, diag(exp(logvars_k))) for codes [..., d] and K components
    [K, d], in z's dtype. The squared distances are expanded into matmuls, so no [..., K, d]
    tensor is made; their parts nearly cancel when posteriors are sharp, so they are taken in
    float64 (and outside bf16 autocast, where they lost hundreds of nats)."""
    with torch.autocast(z.device.type, enabled=False):
        flat = z.reshape(-1, z.shape[-1]).double()
        means, logvars = means.double(), logvars.double()
        inverse = torch.exp(-logvars)  # [K, d]
        quadratic = (
            flat.pow(2) @ inverse.T
            - 2 * flat @ (means * inverse).T
            + (means.pow(2) * inverse + logvars).sum(-1)
        )  # [N, K]
        log_components = -0.5 * (quadratic + z.shape[-1] * LOG_2PI)
        mixture = torch.logsumexp(log_components, -1) - math.log(len(means))
    return mixture.to(z.dtype).reshape(z.shape[:-1])


class VampVAE(VAE):
    """The VAE 784-400-20 whose prior is a mixture of its posteriors at 500 pseudo-inputs."""

    config_class = VampConfig

    learned_prior = True

    config: VampConfig

    def __init__(self, config: VampConfig | None = None):
        config = config or VampConfig()
        super().__init__(config)
        self.pseudo_inputs = nn.Parameter(
            0.05 + 0.01 * torch.randn(config.pseudo_inputs, *self.image_shape)
        )

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The means and log-variances [K, latent_dim] of the prior's components."""
        return self.posterior(self.pseudo_inputs.clamp(0, 1))

    @torch.no_grad()
    def draw_prior(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n codes from the mixture: a component drawn uniformly, then a code from it."""
        means, logvars = (t.detach().cpu().float() for t in self.prior_components())
        picked = torch.randint(len(means), (n,), generator=generator)
        noise = torch.randn(n, means.shape[1], generator=generator)
        return means[picked] + torch.exp(0.5 * logvars[picked]) * noise

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        means, logvars = self.prior_components()
        return diagonal_mixture_log_density(z, means, logvars)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        """Summed BCE + kl_weight * (log q(z|x) - log p(z)) at one posterior draw, averaged
        over the batch."""
        mu, logvar = self.posterior(x)
        eps = torch.randn_like(mu)
        z = mu + eps * torch.exp(0.5 * logvar)
        log_q = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)
        kl = (log_q - self.log_prior(z)).sum() / len(x)
        recon = bernoulli_nll(self.decode_logits(z), x.flatten(1)).sum() / len(x)
        loss = recon + (self.kl_scale * self.config.kl_weight) * kl
        return LossOutput(loss, {"recon": recon.detach(), "kl": kl.detach()})
