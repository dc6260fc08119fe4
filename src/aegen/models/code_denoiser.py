"""A velocity network on grids of codes [B, C, H, W] for flow matching, with classifier-free
guidance: the latent diffusion model's prior (ldm.py).

Flow matching (as the `diffusion` sampler on flat codes, latent/diffusion.py): a code u, noise
e, t ~ U(0, 1), x_t = (1 - t) e + t u; the network learns the velocity u - e at x_t. It is a
stack of residual 3x3 convolution blocks at the grid's own resolution (a 7 x 7 grid is too small
to pay for a U-Net's down- and up-sampling; four blocks already see the whole grid), each told
the time and the label by a learned shift of its features. The label is dropped (replaced by a
"no label" entry) for `label_dropout` of the training codes, so the same network also gives the
unconditional velocity, and sampling mixes the two: v = v(no label) + w (v(label) - v(no label))
(Ho & Salimans, 2022), w the guidance scale (1: the conditional velocity alone).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from aegen.models.flow_matching import SOLVERS, TIME_FEATURES, time_features


class ResidualBlock(nn.Module):
    """h + conv(SiLU(norm(conv(SiLU(norm(h))) + shift(time, label))))."""

    def __init__(self, width: int):
        super().__init__()
        groups = 8 if width % 8 == 0 else 1
        self.norm1, self.norm2 = nn.GroupNorm(groups, width), nn.GroupNorm(groups, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.shift = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        inner = self.conv1(F.silu(self.norm1(h))) + self.shift(embedding)[:, :, None, None]
        return h + self.conv2(F.silu(self.norm2(inner)))


class CodeDenoiser(nn.Module):
    """v(x_t, t, label) on code grids of `channels` channels; `classes` 0: unconditional."""

    def __init__(self, channels: int, classes: int, width: int, blocks: int):
        super().__init__()
        self.classes = classes
        self.time = nn.Sequential(
            nn.Linear(TIME_FEATURES, width), nn.SiLU(), nn.Linear(width, width)
        )
        # Entry `classes` is "no label": the unconditional velocity.
        self.label = nn.Embedding(classes + 1, width)
        self.inner = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(blocks))
        groups = 8 if width % 8 == 0 else 1
        self.norm = nn.GroupNorm(groups, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # a still field at first
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The velocity at x [B, C, H, W], times t [B], label indices [B] (`classes`: none)."""
        embedding = F.silu(self.time(time_features(t)) + self.label(labels))
        h = self.inner(x)
        for block in self.blocks:
            h = block(h, embedding)
        return self.out(F.silu(self.norm(h)))

    def no_labels(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.full((n,), self.classes, dtype=torch.long, device=device)

    def loss(
        self, u: torch.Tensor, labels: torch.Tensor | None, label_dropout: float
    ) -> torch.Tensor:
        """Flow matching's squared error summed over a code, averaged over the batch; a share
        `label_dropout` of the labels is dropped (torch's global generator: seeded per epoch)."""
        n = len(u)
        given = self.no_labels(n, u.device)
        if labels is not None and self.classes:
            dropped = torch.rand(n, device=u.device) < label_dropout
            given = torch.where(dropped, given, labels.long())
        noise = torch.randn_like(u)
        t = torch.rand(n, device=u.device)
        x_t = (1 - t[:, None, None, None]) * noise + t[:, None, None, None] * u
        return (self(x_t, t, given) - (u - noise)).pow(2).flatten(1).sum(1).mean()

    @torch.no_grad()
    def sample(
        self,
        noise: torch.Tensor,
        labels: torch.Tensor | None,
        guidance: float,
        steps: int,
        path: list[torch.Tensor] | None = None,
        interval: tuple[float, float] = (0.0, 1.0),
        solver: str = "heun",
    ) -> torch.Tensor:
        """Codes from noise [B, C, H, W] by the solver (flow_matching.SOLVERS) in `steps` steps,
        guided towards the labels by `guidance` (labels None: unconditional) where the time
        lies in `interval`; `path` receives each step's codes."""
        solve = SOLVERS[solver]
        none = self.no_labels(len(noise), noise.device)
        if labels is None or not self.classes:
            return solve(lambda x, t: self(x, t, none), noise, steps, path)
        wanted = labels.long().to(noise.device)
        if guidance == 1.0:
            return solve(lambda x, t: self(x, t, wanted), noise, steps, path)

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if not interval[0] <= float(t[0]) <= interval[1]:  # one time for every row
                return self(x, t, wanted)
            both = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([wanted, none]))
            conditional, unconditional = both.chunk(2)
            return unconditional + guidance * (conditional - unconditional)

        return solve(guided, noise, steps, path)
