"""What flow matching needs on both sides of the layers: the time features a velocity network
reads and the ODE solver that follows it (the `diffusion` sampler on flat codes,
latent/diffusion.py; the ldm's prior on code grids, code_denoiser.py).

The path runs from noise at t = 0 to data at t = 1 along straight lines; sampling follows the
learned velocity with Heun's method or Adams-Bashforth's two-step method, both second order and
deterministic (the second with one network evaluation a step, reusing the step before's).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

TIME_FEATURES = 32


def time_features(t: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features [N, TIME_FEATURES] of times t in [0, 1] (Vaswani et al.'s encoding)."""
    half = TIME_FEATURES // 2
    frequencies = torch.exp(torch.arange(half, device=t.device) * (-math.log(1000.0) / (half - 1)))
    angles = 1000.0 * t[:, None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], 1)


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


def adams_bashforth_solve(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    steps: int,
    path: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Follow velocity(x, t) from t = 0 to 1 by Adams-Bashforth's two-step method in `steps`
    equal steps: one evaluation a step, x += dt (3/2 v_now - 1/2 v_before), the first step
    Euler's. The times are exactly i / steps, so a guidance window's ends hold."""
    previous = None
    for i in range(steps):
        v = velocity(x, torch.full((len(x),), i / steps, device=x.device))
        x = x + (v if previous is None else 1.5 * v - 0.5 * previous) / steps
        previous = v
        if path is not None:
            path.append(x)
    return x


SOLVERS = {"ab2": adams_bashforth_solve, "heun": heun_solve}
