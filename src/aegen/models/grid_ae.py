"""A conv autoencoder to a code grid, with a prior over the grids trained after it: what vq-vae
and ldm share (their subclasses give the code and the prior).

The encoder is the conv models' stride-2 convolutions (two up to 32 px, so a 28 px image gets a
7x7 grid and a 32 px one 8x8; a third from 64 px on, so a 64 px image gets an 8x8 grid of wider
features rather than the 28 px layout stretched to 16x16) and a 1x1 convolution to the code's
channels; a 1x1 convolution widens the grid again for the conv decoder; the sigmoid gives the
image. The run trains in two stages (Autoencoder.stages): the autoencoder ("autoencoder":
encoder, widening, decoder) first, until its held-out reconstruction settles (stage_switch
"settled"), then the prior ("prior") on its finished codes for the rest of the epochs, at least
the last `prior_share` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import (
    STAGE_SWITCHES,
    Autoencoder,
    ModelConfig,
    Stage,
    option,
    require_positive,
    two_stages,
)
from aegen.models.conv_nets import check_conv_sizes, conv_decoder, conv_encoder, upsample_option


def grid_widths(image_size: int) -> tuple[int, ...]:
    """The default stride-2 widths for an image side: two up to 32 px, a third of 128 channels
    from 64 px on, a fourth from 128 px on (a code grid of 7-16 positions a side)."""
    widths = [32, 64]
    while image_size // 2 ** len(widths) > 8 and image_size % 2 ** (len(widths) + 1) == 0:
        widths.append(128)
    return tuple(widths)


@dataclass
class GridConfig(ModelConfig):
    """The conv widths, the decoder's upsampling and how the run is split into stages."""

    model: ClassVar[str] = "this model"  # named in error messages
    may_be_zero: ClassVar[tuple[str, ...]] = ()  # integer options that may be 0
    hidden_channels: tuple[int, ...] = option(
        (32, 64),
        "channels of the stride-2 convolutions (64 px and up: a third, 128; ldm on colour "
        "images up to 32 px: 64, 128)",
    )
    upsample: str = upsample_option()
    prior_share: float = option(0.5, "least share of the epochs, at the end, left to the prior")
    stage_switch: str = option(
        "settled",
        "settled: the autoencoder stage ends once its held-out reconstruction gains less than 1% "
        "in 2 epochs (not before autoencoder_steps steps and 3 epochs; at the latest where "
        "prior_share begins); fixed: the prior gets exactly the last prior_share of the epochs",
    )
    autoencoder_steps: int = option(
        500, "least optimizer steps of the autoencoder stage (stage_switch settled)"
    )

    @classmethod
    def defaults_for_images(cls, image_size: int, channels: int) -> dict[str, Any]:
        return {"hidden_channels": grid_widths(image_size)}

    def check(self) -> None:
        require_positive(self, may_be_zero=self.may_be_zero)
        check_conv_sizes(self.model, self.image_size, self.hidden_channels, self.upsample)
        if not 0 < self.prior_share < 1:
            raise ConfigError(
                f"{self.model} needs 0 < prior_share < 1 (the prior's share of the epochs)"
            )
        if self.stage_switch not in STAGE_SWITCHES:
            raise ConfigError(
                f"stage_switch is one of {', '.join(STAGE_SWITCHES)}, got {self.stage_switch!r}"
            )


class GridAutoencoder(Autoencoder):
    """Conv encoder (`hidden_channels`, then `encoder_channels` per position), 1x1 widening of
    the `code_channels` grid back to the decoder; the subclass adds `self.prior`, a module."""

    value_range = (0.0, 1.0)
    learned_prior = True
    # Trained in the channels_last layout: on the 2-core CPU an epoch of the autoencoder takes
    # 0.70-0.76x the time and one of the prior 0.92x (mnist-5k, interleaved; bench/README.md),
    # most of it in the last convolution to 1 or 3 channels, 2-3x faster so.
    channels_last = True
    prior: nn.Module
    config: GridConfig

    def __init__(self, config: GridConfig, code_channels: int, encoder_channels: int):
        super().__init__(config)
        widths, c = config.hidden_channels, config.channels
        side = config.image_size // 2 ** len(widths)
        self.image_shape = (c, config.image_size, config.image_size)
        self.grid_shape = (code_channels, side, side)
        self.latent_dim = code_channels * side * side
        self.encoder = nn.Sequential(
            *conv_encoder(c, widths)[:-1], nn.Conv2d(widths[-1], encoder_channels, 1)
        )
        self.expand = nn.Conv2d(code_channels, widths[-1], 1)
        self.decoder = conv_decoder(widths, c, config.upsample)

    @property
    def default_sampler(self) -> str:
        return "prior"  # the model's own

    def prior_rows(self, n: int) -> int:
        """How many of a batch's n codes the prior's loss runs on: in the autoencoder's stage
        of training (its steps and its validation) the prior waits and only reports that
        loss, so an eighth of the batch estimates it (on all of them, ldm's prior pass was
        60 % of the stage's FLOPs)."""
        if not self.trains("prior"):
            return max(1, n // 8)
        return n

    @property
    def graphable(self) -> bool:
        return False  # two update groups and buffers updated eagerly (codebook, code statistics)

    def default_batch_size(self, train_images: int) -> int:
        """128, halved down to 16 while an epoch would have fewer than 60 steps: the stages
        are counted in epochs, and an epoch of a small folder (1,544 emoji: 13 steps of 128)
        is too short a unit for a stage to settle in. Measured on 1,544 emoji at 32 px (ldm,
        30 epochs): batches of 16 (97 steps an epoch) rebuild the held-out emoji at 25.1 dB
        against 23.7 for 32 (49 steps), in the same time; mnist-5k keeps 64 (71 steps)."""
        batch = 128
        while batch > 16 and train_images / batch < 60:
            batch //= 2
        return batch

    # The held-out term the autoencoder stage settles on: one whose best value is 0 (a summed
    # BCE of colour pixels sits on their entropy, which makes every gain look small).
    settle_measure = "val_recon"

    def stages(self, epochs: int) -> list[Stage]:
        config = self.config
        return two_stages(
            epochs,
            config.prior_share,
            config.stage_switch,
            config.autoencoder_steps,
            self.settle_measure,
        )

    def update_groups(self) -> dict[str, list[nn.Parameter]]:
        autoencoder = [*self.encoder.parameters(), *self.expand.parameters()]
        return {
            "autoencoder": [*autoencoder, *self.decoder.parameters()],
            "prior": list(self.prior.parameters()),
        }

    def _logits(self, grid: torch.Tensor) -> torch.Tensor:
        """Pixel logits [B, C, H, W] of code grids [B, code_channels, side, side]."""
        return self.decoder(F.relu(self.expand(grid)))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self._logits(z.view(-1, *self.grid_shape)))
