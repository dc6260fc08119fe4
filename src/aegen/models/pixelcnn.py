"""A small PixelCNN (van den Oord et al., 2016) over grids of codebook indices: the learned,
autoregressive prior of the VQ-VAE. Masked convolutions let the logits at each position see only
the positions before it in raster order; sampling fills the grid one position at a time."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees the rows above and, in its own row, the columns to the left (and
    the centre itself for mask "B", not for "A", the first layer's)."""

    mask: torch.Tensor

    def __init__(self, kind: str, channels_in: int, channels_out: int, kernel: int):
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel // 2
        mask[:, :, centre, centre + (kind == "B") :] = 0
        mask[:, :, centre + 1 :, :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """Index grids [B, H, W] -> logits [B, entries, H, W] of each position given those before."""

    def __init__(self, entries: int, channels: int, layers: int):
        super().__init__()
        self.entries = entries
        self.embed = nn.Embedding(entries, channels)
        self.first = MaskedConv2d("A", channels, channels, 5)
        self.hidden = nn.ModuleList(MaskedConv2d("B", channels, channels, 3) for _ in range(layers))
        self.out = nn.Conv2d(channels, entries, 1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.first(self.embed(grid).permute(0, 3, 1, 2)))
        for layer in self.hidden:
            h = h + F.relu(layer(h))  # residual: deeper without losing the first layer's view
        return self.out(h)

    def nll(self, grid: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of index grids [B, H, W] in nats per grid, batch mean."""
        return F.cross_entropy(self(grid), grid, reduction="sum") / len(grid)

    @torch.no_grad()
    def sample(
        self, n: int, height: int, width: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """n index grids [n, H, W] drawn position by position (the generator on the CPU)."""
        grid = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for row in range(height):
            for column in range(width):
                probabilities = torch.softmax(self(grid)[:, :, row, column].float(), 1).cpu()
                drawn = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
                grid[:, row, column] = drawn.to(device)
        return grid
