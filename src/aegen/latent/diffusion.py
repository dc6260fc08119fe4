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

import math
from collections.abc import Callable

import torch
from torch import nn

from aegen.latent.code_fitting import CodeNetwork, FitSettings, NetworkSampler

DEFAULT_STEPS = 25
TIME_FEATURES = 32


def time_features(t: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features [N, TIME_FEATURES] of times t in [0, 1] (Vaswani et al.'s encoding)."""
    half = TIME_FEATURES // 2
    frequencies = torch.exp(torch.arange(half, device=t.device) * (-math.log(1000.0) / (half - 1)))
    angles = 1000.0 * t[:, None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], 1)


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


def heun_solve(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    steps: int,
    path: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Follow velocity(x, t) (t one time per row) from t = 0 (noise x) to t = 1 by Heun's
    method in `steps` equal steps; `path`, if given, receives x after each step."""
    dt = 1.0 / steps
    for i in range(steps):
        t = torch.full((len(x),), i * dt, device=x.device)
        v = velocity(x, t)
        guess = x + dt * v
        if i == steps - 1:  # Euler's for the last step: one network evaluation fewer
            x = guess
        else:
            x = x + 0.5 * dt * (v + velocity(guess, t + dt))
        if path is not None:
            path.append(x)
    return x


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
