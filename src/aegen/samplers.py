"""Latent samplers: where codes to decode come from. Fitted once on training codes, saved, reused.

A VAE is trained so that its codes follow N(0, I), so `prior` is its own sampler. A plain
autoencoder is not: its codes lie wherever training put them, so for it `prior` is the naive
attempt and `gaussian` (one full-covariance Gaussian fitted to the training codes) the first
honest one.
"""

from __future__ import annotations

import torch

from aegen.errors import ConfigError
from aegen.names import closest


class PriorSampler:
    """N(0, I) in the latent space; nothing to fit."""

    name = "prior"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def fit(self, codes: torch.Tensor) -> "PriorSampler":
        return self

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


class GaussianSampler:
    """One Gaussian with the mean and full covariance of the training codes."""

    name = "gaussian"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self.mean = torch.zeros(latent_dim)
        self.scale_tril = torch.eye(latent_dim)

    def fit(self, codes: torch.Tensor) -> "GaussianSampler":
        codes = codes.double()
        if len(codes) < 2:
            raise ConfigError("fitting a Gaussian to codes needs at least two of them")
        covariance = torch.cov(codes.T).reshape(self.latent_dim, self.latent_dim)
        # A little jitter keeps the Cholesky factor defined when a code dimension is constant.
        jitter = 1e-6 * covariance.diagonal().mean().clamp_min(1e-12)
        self.mean = codes.mean(0).float()
        self.scale_tril = torch.linalg.cholesky(
            covariance + jitter * torch.eye(self.latent_dim, dtype=covariance.dtype)).float()
        return self

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator)
        return self.mean + noise @ self.scale_tril.T

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.contiguous(), "scale_tril": self.scale_tril.contiguous()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors["mean"].shape != (self.latent_dim,) or \
                tensors["scale_tril"].shape != (self.latent_dim, self.latent_dim):
            raise ConfigError("the saved Gaussian sampler does not match the model's latent size")
        self.mean, self.scale_tril = tensors["mean"], tensors["scale_tril"]


SAMPLERS = {"prior": PriorSampler, "gaussian": GaussianSampler}


def make_sampler(name: str, latent_dim: int) -> PriorSampler | GaussianSampler:
    """An unfitted sampler of the given name."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}{closest(name, SAMPLERS)}; "
                          f"choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](latent_dim)
