"""A vector quantiser with an exponential-moving-average codebook (van den Oord et al., 2017,
appendix; the form most VQ-VAEs train with) and restarts of dead entries.

Each vector is replaced by its nearest codebook entry; the gradient passes straight through to
the encoder, which a commitment term keeps near its entries. The codebook is not trained by
the gradient: while training, each entry moves to the moving average of the vectors assigned to
it (counts smoothed so that no entry divides by zero), and an entry whose moving count falls
below `restart_below` is moved onto a random vector of the batch, so entries that nothing uses
come back into play instead of staying dead. All of it is buffers, saved with the weights and
restored on resume; the shapes never depend on the data (no boolean indexing).
"""

from __future__ import annotations

import torch
from torch import nn

SMOOTHING = 1e-5  # Laplace smoothing of the moving counts


class EMAQuantizer(nn.Module):
    """Nearest of `entries` vectors of `dim` numbers; EMA updates with `decay` while training."""

    codebook: torch.Tensor  # [entries, dim]
    counts: torch.Tensor  # [entries], moving
    sums: torch.Tensor  # [entries, dim], moving

    def __init__(self, entries: int, dim: int, decay: float, restart_below: float):
        super().__init__()
        self.decay, self.restart_below = decay, restart_below
        # Counts start at zero: on the first step every entry no vector chose is restarted onto
        # one of the batch's vectors, so the codebook starts where the encoder's vectors are.
        codebook = torch.randn(entries, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("counts", torch.zeros(entries))
        self.register_buffer("sums", torch.zeros(entries, dim))

    def indices(self, vectors: torch.Tensor) -> torch.Tensor:
        """The nearest entry of each vector [N, dim] -> [N]."""
        distances = (
            vectors.pow(2).sum(1, keepdim=True)
            - 2 * vectors @ self.codebook.T
            + self.codebook.pow(2).sum(1)
        )
        return distances.argmin(1)

    def forward(
        self, vectors: torch.Tensor, update: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors [N, dim] -> (their entries, with the gradient passed straight through to
        the vectors; the indices [N]). With update (a training step) the codebook moves first."""
        index = self.indices(vectors.detach())
        if update:
            self._update(vectors.detach(), index)
        chosen = self.codebook[index]
        return vectors + (chosen - vectors).detach(), index

    @torch.no_grad()
    def _update(self, vectors: torch.Tensor, index: torch.Tensor) -> None:
        entries = len(self.codebook)
        used = torch.zeros(entries, device=vectors.device).index_add_(
            0, index, torch.ones_like(index, dtype=vectors.dtype)
        )
        sums = torch.zeros_like(self.sums).index_add_(0, index, vectors)
        self.counts.mul_(self.decay).add_(used, alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.counts.sum()
        smoothed = (self.counts + SMOOTHING) / (total + entries * SMOOTHING) * total
        self.codebook.copy_(self.sums / smoothed.unsqueeze(1))
        # Dead entries take a random vector of this batch, and a count of one to start from.
        dead = (self.counts < self.restart_below).unsqueeze(1)
        fresh = vectors[torch.randint(len(vectors), (entries,), device=vectors.device)]
        self.codebook.copy_(torch.where(dead, fresh, self.codebook))
        self.sums.copy_(torch.where(dead, fresh, self.sums))
        self.counts.copy_(torch.where(dead.squeeze(1), torch.ones_like(self.counts), self.counts))
