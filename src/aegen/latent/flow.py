"""`flow`: a normalizing flow fitted to the codes by maximum likelihood (affine coupling layers,
Dinh et al., "Density estimation using Real NVP", ICLR 2017).

Each layer leaves half of the dimensions as they are and shifts and scales the other half by
amounts a small network computes from the first half (and the label, for a conditional model);
the halves are chosen by a fixed seeded permutation per layer pair, so every dimension is
transformed and every pair of dimensions can interact. Sampling runs the layers backwards from
N(0, I): exact, one pass, no iteration. Written here rather than taken from a flow library: the
well-kept ones (nflows, zuko, normflows) each add a dependency for ~60 lines.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aegen.latent.code_fitting import CodeNetwork, FitSettings, NetworkSampler, mlp, one_hot

LOG_2PI = math.log(2 * math.pi)


class Coupling(nn.Module):
    """x -> x on the kept dimensions, x * exp(s) + t on the others; s, t = net(kept, label)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor, classes: int, hidden: int):
        super().__init__()
        dim = len(mask)
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the seed, not saved
        self.net = mlp(dim + classes, hidden, 2 * dim)

    def _shift_and_log_scale(
        self, kept: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self.net(torch.cat([kept, y], 1)).chunk(2, 1)
        free = 1 - self.mask
        return shift * free, torch.tanh(log_scale) * free  # tanh: no step can explode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Towards the noise: the transformed codes and log |det| of the step."""
        shift, log_scale = self._shift_and_log_scale(x * self.mask, y)
        return x * torch.exp(log_scale) + shift, log_scale.sum(1)

    def inverse(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, log_scale = self._shift_and_log_scale(z * self.mask, y)
        return (z - shift) * torch.exp(-log_scale)


def coupling_masks(dim: int, layers: int, seed: int = 0) -> list[torch.Tensor]:
    """Pairs of complementary masks, each pair splitting a fresh seeded permutation in half."""
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(layers // 2):
        order = torch.randperm(dim, generator=generator)
        mask = torch.zeros(dim)
        mask[order[: dim // 2]] = 1
        masks += [mask, 1 - mask]
    return masks


class RealNVP(CodeNetwork):
    """A stack of coupling layers; the loss is the negative log-likelihood of the codes."""

    def __init__(self, latent_dim: int, classes: int, layers: int = 8, hidden: int = 96):
        super().__init__(latent_dim, classes)
        self.layers: list[Coupling] = nn.ModuleList(  # type: ignore[assignment]
            Coupling(mask, classes, hidden) for mask in coupling_masks(latent_dim, layers)
        )

    def log_prob(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_det = torch.zeros(len(u))
        for layer in self.layers:
            u, step = layer(u, y)
            log_det = log_det + step
        return -0.5 * (u.pow(2).sum(1) + self.latent_dim * LOG_2PI) + log_det

    def loss(self, u: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return -self.log_prob(u, y) / self.latent_dim  # nats per dimension

    def invert(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z, y)
        return z


class FlowSampler(NetworkSampler):
    """Codes drawn through a Real NVP flow fitted to the training codes."""

    name = "flow"
    settings = FitSettings(max_steps=2500, batch_size=1024, learning_rate=2e-3)

    def build(self) -> RealNVP:
        return RealNVP(self.latent_dim, self.classes)

    def draw(self, n: int, generator: torch.Generator, y: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.network, RealNVP)
        return self.network.invert(torch.randn(n, self.latent_dim, generator=generator), y)

    @torch.no_grad()
    def log_prob(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log density of codes under the fitted flow (in the codes' own units)."""
        assert isinstance(self.network, RealNVP)
        u = self.standardiser(codes.float())
        return (
            self.network.log_prob(u, one_hot(labels, self.classes, len(u)))
            - self.standardiser.scale.log().sum()
        )
