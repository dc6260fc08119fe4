"""`diffusion`: a denoising model on the codes, trained by flow matching and sampled by a
deterministic ODE solver (Lipman et al., "Flow matching for generative modeling", ICLR 2023;
Liu et al.'s rectified flow is the same straight path).

Training: a code u, noise e ~ N(0, I), t ~ U(0, 1), the point x_t = (1 - t) e + t u on the
straight path between them; an MLP with a time embedding learns the velocity u - e at x_t.
Sampling: start from noise and follow the learned velocity from t = 0 to 1 with Heun's method
(second order, deterministic: the same noise gives the same code) in a fixed number of steps.
This is the diffusion family's probability-flow ODE with the simplest schedule; `diffusion-N`
samples with N steps (default 25, i.e. 49 network evaluations) from the same fitted network.
"""

from __future__ import annotations

import torch
from torch import nn

from aegen.latent.code_fitting import CodeNetwork, FitSettings, NetworkSampler
from aegen.models.flow_matching import TIME_FEATURES, heun_solve, time_features

DEFAULT_STEPS = 25


class Block(nn.Module):
    """A residual MLP block: x + W2 SiLU(W1 LayerNorm(x))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm, self.inner, self.outer = (
            nn.LayerNorm(width),
            nn.Linear(width, width),
            nn.Linear(width, width),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.outer(nn.functional.silu(self.inner(self.norm(h))))


class VelocityField(CodeNetwork):
    """v(x_t, t, label): the velocity of the straight path from noise to codes."""

    def __init__(self, latent_dim: int, classes: int, width: int = 128, blocks: int = 3):
        super().__init__(latent_dim, classes)
        self.embed = nn.Linear(latent_dim + TIME_FEATURES + classes, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        last = nn.Linear(width, latent_dim)
        nn.init.zeros_(last.weight)  # a still field at first: the fit starts from "no motion"
        nn.init.zeros_(last.bias)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), last)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.embed(torch.cat([x, time_features(t), y], 1))))

    def loss(self, u: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(u.shape, generator=generator)
        t = torch.rand(len(u), generator=generator)
        x_t = (1 - t[:, None]) * noise + t[:, None] * u
        return (self(x_t, t, y) - (u - noise)).pow(2).mean(1)

    def solve(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
        """Heun's method from t = 0 (noise) to t = 1 (codes) in `steps` equal steps."""
        return heun_solve(lambda x_t, t: self(x_t, t, y), x, steps)


class DiffusionSampler(NetworkSampler):
    """Codes drawn by solving the learned flow-matching ODE from Gaussian noise."""

    name = "diffusion"
    settings = FitSettings(max_steps=7000, learning_rate=1e-3)

    def __init__(self, latent_dim: int, classes: int = 0, steps: int = DEFAULT_STEPS):
        super().__init__(latent_dim, classes)
        self.steps = steps
        if steps != DEFAULT_STEPS:
            self.name = f"diffusion-{steps}"

    def build(self) -> VelocityField:
        return VelocityField(self.latent_dim, self.classes)

    def draw(self, n: int, generator: torch.Generator, y: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.network, VelocityField)
        noise = torch.randn(n, self.latent_dim, generator=generator)
        return torch.cat(
            [
                self.network.solve(part, y_part, self.steps)
                for part, y_part in zip(noise.split(4096), y.split(4096))
            ]
        )
