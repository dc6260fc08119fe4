"""The vector-quantised VAE (van den Oord et al., 2017) with a learned autoregressive prior.

The conv encoder maps an image to a grid of vectors (7 x 7 for 28-pixel images), each replaced
by its nearest codebook entry (quantizer.py: EMA updates, dead entries restarted); the decoder
rebuilds the image from the quantised grid. Its loss is the squared error summed over pixels plus
`commitment` times the distance of the encoder's vectors to their entries. A PixelCNN over the
grids of entry indices (pixelcnn.py) is its prior: the `prior` sampler draws index grids from it
and decodes their entries. There is no Gaussian code space, so the samplers fitted to codes
(gaussian, gmm, flow, ...) do not apply.

The run trains in two stages (Autoencoder.stages), as the paper does: the autoencoder first, on
its reconstruction and commitment, until its held-out reconstruction settles (grid_ae.py), then,
for the rest of the epochs (at least the last `prior_share`), the prior on the finished
autoencoder's index grids, which no longer change (the codebook stops moving). The stage follows
from the epoch number and the finished epochs' history, so `--resume` continues in whichever
stage a run stopped; a run of one epoch trains both at once. Its `loss` is the sum of the two
parts, in nats-like units: summed squared error plus the prior's nats per grid; each stage's
group minimises its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from aegen.errors import ConfigError
from aegen.models.base import LossOutput, option
from aegen.models.code_ae import reconstruction_error
from aegen.models.grid_ae import GridAutoencoder, GridConfig
from aegen.models.pixelcnn import PixelCNN
from aegen.models.quantizer import EMAQuantizer


@dataclass
class VQVAEConfig(GridConfig):
    """The conv widths, the codebook, the commitment weight and the prior's size."""

    model: ClassVar[str] = "vq-vae"
    embedding_dim: int = option(16, "numbers in each codebook entry")
    codebook_size: int = option(128, "entries in the codebook")
    commitment: float = option(0.25, "weight of the encoder's distance to its entries")
    ema_decay: float = option(0.99, "moving-average decay of the codebook's updates")
    restart_below: float = option(
        1.0, "an entry chosen by fewer vectors per step (moving average) restarts"
    )
    prior_channels: int = option(64, "channels of the PixelCNN prior")
    prior_layers: int = option(4, "masked 3x3 layers of the PixelCNN prior")
    prior_share: float = option(0.3, "least share of the epochs, at the end, left to the prior")

    def check(self) -> None:
        super().check()
        if self.codebook_size < 2:
            raise ConfigError("vq-vae needs a codebook of 2 or more entries")
        if not 0 <= self.ema_decay < 1 or self.commitment < 0 or self.restart_below < 0:
            raise ConfigError(
                "vq-vae needs 0 <= ema_decay < 1, commitment >= 0 and restart_below >= 0"
            )


class VQVAE(GridAutoencoder):
    """Conv encoder to a 7 x 7 grid of 16-d vectors, a 128-entry codebook, conv decoder, sigmoid;
    a PixelCNN prior over the grid's indices."""

    config_class = VQVAEConfig

    continuous_codes = False  # codes are codebook entries: no density to fit to them

    config: VQVAEConfig
    prior: PixelCNN

    def __init__(self, config: VQVAEConfig | None = None):
        config = config or VQVAEConfig()
        dim = config.embedding_dim
        super().__init__(config, dim, dim)
        self.quantizer = EMAQuantizer(
            config.codebook_size, dim, config.ema_decay, config.restart_below
        )
        self.prior = PixelCNN(config.codebook_size, config.prior_channels, config.prior_layers)

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's grid as rows of vectors [B * side * side, dim]."""
        return self.encoder(x).permute(0, 2, 3, 1).reshape(-1, self.grid_shape[0])

    def _grid(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        """Rows of vectors back to grids [B, dim, side, side]."""
        dim, side, _ = self.grid_shape
        return rows.view(batch, side, side, dim).permute(0, 3, 1, 2)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The quantised grid, flattened: [B, dim * side * side]."""
        chosen, _ = self.quantizer(self._vectors(x))
        return self._grid(chosen, len(x)).flatten(1)

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The codebook index at each grid position: [B, side, side]."""
        _, side, _ = self.grid_shape
        return self.quantizer.indices(self._vectors(x)).view(len(x), side, side)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        grad = torch.is_grad_enabled()
        autoencoder_trains = self.trains("autoencoder")
        with torch.set_grad_enabled(grad and autoencoder_trains):  # a part that waits: no graph
            vectors = self._vectors(x)
            chosen, index = self.quantizer(vectors, update=self.training and autoencoder_trains)
            commitment = (vectors - chosen.detach()).pow(2).sum() / len(x)
            rebuilt = self.decode(self._grid(chosen, len(x)).flatten(1))
            recon = reconstruction_error(rebuilt, x)
        _, side, _ = self.grid_shape
        with torch.set_grad_enabled(grad and self.trains("prior")):
            rows = self.prior_rows(len(x))
            prior_nll = self.prior.nll(index.view(len(x), side, side)[:rows])
        autoencoder = recon + self.config.commitment * commitment
        used = torch.zeros(len(self.quantizer.codebook), device=x.device).index_fill_(0, index, 1)
        terms = {
            "recon": recon.detach(),
            "commitment": commitment.detach(),
            "prior_nll": prior_nll.detach(),
            "entries_used": used.sum(),
        }
        return LossOutput(
            autoencoder + prior_nll, terms, {"autoencoder": autoencoder, "prior": prior_nll}
        )

    @torch.no_grad()
    def draw_prior(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n codes drawn from the PixelCNN prior: index grids, position by position, and their
        entries, flattened like encode's [n, dim * side * side] (on the CPU)."""
        dim, side, _ = self.grid_shape
        device = self.quantizer.codebook.device
        grid = self.prior.sample(n, side, side, generator, device)
        chosen = self.quantizer.codebook[grid.flatten()]
        return self._grid(chosen, n).flatten(1).cpu()
