"""Latent samplers: where codes to decode come from. Fitted once on training codes, saved, reused.

A VAE is trained so that its codes follow N(0, I), so `prior` is its own sampler. A plain
autoencoder is not: its codes lie wherever training put them, so for it `prior` is the naive
attempt, `gaussian` (one full-covariance Gaussian fitted to the training codes) the first
honest one and `gmm` (a mixture of them) the one that can follow several clusters. The learned
densities go further, for every model: `flow` (a normalizing flow), `diffusion` (flow matching
with an ODE sampler) and `two-stage` (a second VAE on the codes); fitted to a conditional
model's codes, they condition on the label as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from aegen.errors import ConfigError
from aegen.latent.diffusion import DiffusionSampler
from aegen.latent.flow import FlowSampler
from aegen.latent.sampler_state import check_state
from aegen.latent.two_stage import TwoStageSampler
from aegen.names import closest


class PriorSampler:
    """N(0, I) in the latent space; nothing to fit."""

    name = "prior"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> PriorSampler:
        return self

    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state(self, tensors)


class LearnedPriorSampler:
    """A prior the model learned itself (the VampPrior's mixture, the VQ-VAE's PixelCNN, the
    ldm's flow), drawn by the model: part of its weights, so nothing to fit or save here.
    `conditional`: the prior draws codes for labels (ldm's, on labelled data)."""

    def __init__(
        self,
        draw: Callable[[int, torch.Generator, torch.Tensor | None], torch.Tensor | None],
        dim: int,
        conditional: bool = False,
        name: str = "prior",
    ):
        self.draw, self.latent_dim, self.conditional = draw, dim, conditional
        self.name = name  # prior, or prior-N: ldm's flow solved in N steps

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> LearnedPriorSampler:
        return self

    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        codes = self.draw(n, generator, labels if self.conditional else None)
        assert codes is not None  # made only for models that draw their own prior
        return codes

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state(self, tensors)


class GaussianSampler:
    """One Gaussian with the mean and full covariance of the training codes."""

    name = "gaussian"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self.mean = torch.zeros(latent_dim)
        self.scale_tril = torch.eye(latent_dim)

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> GaussianSampler:
        codes = codes.double()
        if len(codes) < 2:
            raise ConfigError("fitting a Gaussian to codes needs at least two of them")
        covariance = torch.cov(codes.T).reshape(self.latent_dim, self.latent_dim)
        # A little jitter keeps the Cholesky factor defined when a code dimension is constant.
        jitter = 1e-6 * covariance.diagonal().mean().clamp_min(1e-12)
        self.mean = codes.mean(0).float()
        self.scale_tril = torch.linalg.cholesky(
            covariance + jitter * torch.eye(self.latent_dim, dtype=covariance.dtype)
        ).float()
        return self

    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator)
        return self.mean + noise @ self.scale_tril.T

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.contiguous(), "scale_tril": self.scale_tril.contiguous()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state(self, tensors)
        self.mean, self.scale_tril = tensors["mean"], tensors["scale_tril"]


# Codes a mixture is fitted on at most (a seeded random subset of more): on Fashion-MNIST's
# 54,000 VAE codes the fit took 7.5 s on all of them and 2.3 s on 10,000 (two BLAS threads), at
# the same FD-aegen of 10,000 samples (28.7 and 28.1; 5,000: 27.0). Every VAE-family and plain-AE
# run fits one for its samples-gmm.png, so that fit is part of every run's fixed cost.
GMM_FIT_CODES = 10_000


def fit_subset(count: int, most: int, seed: int) -> torch.Tensor:
    """Which `most` of `count` codes (or images) a sampler that fits on at most `most` sees: a
    seeded random subset, the same whether the codes or the images are picked."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:most]


class GMMSampler:
    """A Gaussian mixture (full covariances) fitted to the training codes with scikit-learn (to
    GMM_FIT_CODES of them: a run encodes only those images, `most_codes`)."""

    def __init__(self, latent_dim: int, components: int = 10, seed: int = 0):
        self.latent_dim, self.components, self.seed = latent_dim, components, seed
        self.name = "gmm" if components == DEFAULT_GMM_COMPONENTS else f"gmm-{components}"
        self.weights = torch.full((components,), 1.0 / components)
        self.means = torch.zeros(components, latent_dim)
        self.scale_trils = torch.eye(latent_dim).repeat(components, 1, 1)

    @property
    def most_codes(self) -> int:
        return GMM_FIT_CODES

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> GMMSampler:
        from sklearn.mixture import GaussianMixture  # 1 s to import: only when a mixture is fitted
        from threadpoolctl import threadpool_limits

        if len(codes) < self.components:
            raise ConfigError(
                f"a {self.components}-component mixture needs at least "
                f"{self.components} codes, got {len(codes)}"
            )
        if len(codes) > GMM_FIT_CODES:
            codes = codes[fit_subset(len(codes), GMM_FIT_CODES, self.seed)]
        # One BLAS thread: numpy's OpenBLAS threads beside torch's OpenMP threads, which spin
        # on after each operation, fight over the cores. 10,000 Fashion-MNIST VAE codes on 2
        # cores: 4.4 s with two BLAS threads, 0.8 s with one.
        with threadpool_limits(1, user_api="blas"):
            mixture = GaussianMixture(
                self.components, covariance_type="full", reg_covar=1e-5, random_state=self.seed
            ).fit(codes.double().numpy())
        self.weights = torch.from_numpy(mixture.weights_).float()
        self.means = torch.from_numpy(mixture.means_).float()
        self.scale_trils = torch.linalg.cholesky(torch.from_numpy(mixture.covariances_)).float()
        return self

    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.latent_dim, 1, generator=generator)
        return self.means[component] + (self.scale_trils[component] @ noise).squeeze(-1)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "weights": self.weights.contiguous(),
            "means": self.means.contiguous(),
            "scale_trils": self.scale_trils.contiguous(),
        }

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state(self, tensors)
        if bool((tensors["weights"] < 0).any()) or not tensors["weights"].sum() > 0:
            raise ConfigError(f"the saved {self.name} sampler's weights are not a distribution")
        self.weights, self.means = tensors["weights"], tensors["means"]
        self.scale_trils = tensors["scale_trils"]


DEFAULT_GMM_COMPONENTS = 10
# The samplers made by name; a model that learned its own prior (vamp, vq-vae) has it stand in
# for "prior" (trained.py).
NamedSampler = (
    PriorSampler | GaussianSampler | GMMSampler | FlowSampler | DiffusionSampler | TwoStageSampler
)
Sampler = NamedSampler | LearnedPriorSampler


SAMPLERS: dict[str, type[NamedSampler]] = {
    "prior": PriorSampler,
    "gaussian": GaussianSampler,
    "gmm": GMMSampler,
    "flow": FlowSampler,
    "diffusion": DiffusionSampler,
    "two-stage": TwoStageSampler,
}
LEARNED = (FlowSampler, DiffusionSampler, TwoStageSampler)


def make_sampler(name: str, latent_dim: int, classes: int = 0) -> NamedSampler:
    """An unfitted sampler: prior, gaussian, gmm (10 components), gmm-K (K components), flow,
    diffusion (25 ODE steps), diffusion-N (N steps) or two-stage. With classes > 0 (a
    conditional model) the learned ones condition on the label."""
    components, steps = numbered(name, "gmm"), numbered(name, "diffusion")
    if components is not None:
        return GMMSampler(latent_dim, components)
    if steps is not None:
        return DiffusionSampler(latent_dim, classes, steps=steps)
    if name not in SAMPLERS:
        raise ConfigError(
            f"unknown sampler {name!r}{closest(name, SAMPLERS)}; choose one of "
            f"{', '.join(SAMPLERS)}, gmm-K for K components, diffusion-N for N steps or "
            "prior-N for ldm's prior in N steps"
        )
    kind = SAMPLERS[name]
    if kind in LEARNED:
        return kind(latent_dim, classes)
    return kind(latent_dim)


def numbered(name: str, kind: str) -> int | None:
    """N of a name `kind-N` (gmm-K, diffusion-N, prior-N), None for other names; an N outside
    1..10000, or not written plainly, is one line."""
    found = re.fullmatch(rf"{kind}-([0-9]+)", name, re.ASCII)
    if not found:
        return None
    if not 1 <= int(found[1]) <= 10_000 or found[1] != str(int(found[1])):
        raise ConfigError(f"{name!r}: the number after {kind!r} must be a whole number in 1..10000")
    return int(found[1])


def fitted_name(sampler: Sampler) -> str:
    """The name its fitted state is saved under: diffusion-N shares diffusion's network."""
    return "diffusion" if isinstance(sampler, DiffusionSampler) else sampler.name


def is_conditional(sampler: Sampler) -> bool:
    """Whether the sampler draws codes for given labels (a learned one on a conditional model,
    or a learned prior conditioned on labels)."""
    return isinstance(sampler, (*LEARNED, LearnedPriorSampler)) and sampler.conditional
