"""Latent diffusion at MNIST scale (after Rombach et al., CVPR 2022): an autoencoder with a sharp
spatial code and a flow-matching prior on that code.

The autoencoder: the conv bodies down to a 7 x 7 grid of `code_channels` numbers per position (4
by default: 196 numbers for a 28-pixel image), lightly KL-regularised (`kl_weight` on the summed
KL, against the reconstruction's summed error) so that its code space stays smooth without
blurring what it rebuilds. The prior: a convolutional velocity network on the code grids,
trained by flow matching and sampled by `solver` (Adams-Bashforth's two-step method; runs
recorded before it: Heun's) in `sampling_steps` steps (code_denoiser.py, flow_matching.py),
conditioned on the label where the data has labels (classifier-free guidance, scale `guidance`,
on the stretch of the flow from `guidance_from` to `guidance_to` only: after Kynkäänniemi et
al., NeurIPS 2024, who found guidance harmful near the noise and needless near the data). The
codes it learns are standardised per channel by moving averages taken while the autoencoder
trains (saved with the weights), so the prior sees unit-scale numbers whatever scale the encoder
settles on.

Asked for no label, a labelled prior draws labels from the training labels' frequencies (counted
while it trains), then codes for them: a draw from the whole data's distribution, which the
label-guided path serves far better than the unlabelled one it learns on the side (measured on
mnist-5k, 2,000 samples, a 64-channel prior: FD-aegen 55 against 212). The defaults were chosen
on mnist-5k (2,000 samples, 40 epochs): a 128-channel prior against 64 (FD-aegen 40.7 against
68 unguided), guidance 1.5 against 1 and 2 (31.8, 40.7, 59.8). Sampling (bench/ldm_sampling.py,
3,000 samples, the same noise for every way): 5 Adams-Bashforth steps guided on [0.15, 0.7]
take 8 network passes a sample where 10 Heun steps guided throughout took 38, at an FD-aegen
0.96x theirs on mnist-5k and 1.03x on Fashion-MNIST (a second seed alone moved it 1.03x);
guided throughout, 3 Heun steps scored 1.17x and 1.74x.

Two stages, as vq-vae (Autoencoder.stages, grid_ae.py): the autoencoder until its held-out
reconstruction settles, then the prior for the rest of the epochs (at least the last
`prior_share`) on the finished autoencoder's codes. No perceptual or feature loss:
aegen's judge is a classifier of its own, and a loss in its features would flatter the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from aegen.errors import ConfigError
from aegen.models.base import (
    LossOutput,
    option,
)
from aegen.models.bernoulli import bernoulli_nll
from aegen.models.code_denoiser import CodeDenoiser
from aegen.models.flow_matching import SOLVERS
from aegen.models.grid_ae import GridAutoencoder, GridConfig

RECONSTRUCTION_LOSSES = ("bce", "l1", "l2")
CODE_STATS_DECAY = 0.99
# Codes solved together: the prior's features for 128 codes (256 in a guided pass) stay in the
# CPU's caches between its layers; 1,000 codes at once took 1.65x the time (bench/README.md).
SOLVE_ROWS = 128


@dataclass
class LDMConfig(GridConfig):
    """The autoencoder's widths and code, its loss, and the prior's size, guidance and steps."""

    model: ClassVar[str] = "ldm"
    may_be_zero: ClassVar[tuple[str, ...]] = ("prior_classes",)
    code_channels: int = option(
        4, "numbers per position of the code grid (7x7 at 28 px; colour images: 8 by default)"
    )
    kl_weight: float = option(1e-3, "weight of the code's summed KL term")
    reconstruction: str = option("bce", "the autoencoder's summed pixel loss: bce, l1 or l2")
    prior_classes: int = option(10, "labels the prior is conditioned on (0: unconditional)")
    prior_width: int = option(128, "channels of the prior's velocity network")
    prior_blocks: int = option(4, "residual blocks of the prior's velocity network")
    label_dropout: float = option(0.1, "share of training codes the prior sees without a label")
    guidance: float = option(1.5, "classifier-free guidance scale of labelled samples (1: none)")
    guidance_from: float = option(
        0.15, "start of the stretch of the flow (time 0: noise, 1: codes) that guidance acts on"
    )
    guidance_to: float = option(
        0.7, "its end; elsewhere the labelled velocity alone (one network pass, not two)"
    )
    solver: str = option(
        "ab2",
        "the prior's ODE solver when sampling: ab2 (Adams-Bashforth's two-step method, one "
        "evaluation a step) or heun (two a step, the last one)",
    )
    sampling_steps: int = option(5, "solver steps from noise to a code when sampling")

    @classmethod
    def defaults_for_images(cls, image_size: int, channels: int) -> dict[str, Any]:
        """Colour images get 8 numbers per position instead of 4, and up to 32 px twice the
        widths (64, 128): three times the values to rebuild. Measured on 1,716 emoji at 32 px,
        800 steps of 32 (held-out PSNR): 21.8 dB with 4 channels, 22.8 with 8, 24.2 with 8 and
        the wider networks (2.4x the time per step); a third conv at the grid's side did not
        help (21.5). From 64 px the widths stay (32, 64, 128): wider ones cost 4x per step."""
        defaults = super().defaults_for_images(image_size, channels)
        if channels != 3:
            return defaults
        if image_size <= 32:
            defaults["hidden_channels"] = (64, 128)
        return {**defaults, "code_channels": 8}

    def check(self) -> None:
        super().check()
        if self.reconstruction not in RECONSTRUCTION_LOSSES:
            raise ConfigError(
                f"ldm's reconstruction is one of {', '.join(RECONSTRUCTION_LOSSES)}, "
                f"got {self.reconstruction!r}"
            )
        if self.kl_weight < 0 or not 0 <= self.label_dropout < 1 or self.guidance < 0:
            raise ConfigError("ldm needs kl_weight >= 0, 0 <= label_dropout < 1, guidance >= 0")
        if self.solver not in SOLVERS:
            raise ConfigError(f"ldm's solver is one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not 0 <= self.guidance_from <= self.guidance_to <= 1:
            raise ConfigError(
                "ldm needs 0 <= guidance_from <= guidance_to <= 1, got "
                f"{self.guidance_from} and {self.guidance_to}"
            )


class LatentDiffusion(GridAutoencoder):
    """Conv encoder to a KL-regularised 4 x 7 x 7 code, conv decoder, sigmoid; a flow-matching
    prior on the codes."""

    config_class = LDMConfig
    solved_prior = True

    config: LDMConfig
    prior: CodeDenoiser
    settle_measure = "val_mse"  # pixel MSE in [0, 1]: the summed BCE has the pixels' entropy
    code_mean: torch.Tensor
    code_std: torch.Tensor
    code_updates: torch.Tensor
    label_counts: torch.Tensor

    def __init__(self, config: LDMConfig | None = None):
        config = config or LDMConfig()
        k = config.code_channels  # the encoder gives each position's mean and log-variance
        super().__init__(config, k, 2 * k)
        self.prior_classes = config.prior_classes
        self.prior = CodeDenoiser(k, config.prior_classes, config.prior_width, config.prior_blocks)
        # Per-channel moving mean and spread of the training codes (the prior's unit scale).
        self.register_buffer("code_mean", torch.zeros(k))
        self.register_buffer("code_std", torch.ones(k))
        self.register_buffer("code_updates", torch.zeros((), dtype=torch.long))
        # How often the prior saw each label in training: the label marginal draws come from.
        self.register_buffer("label_counts", torch.zeros(config.prior_classes, dtype=torch.long))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The code grid's mean and log-variance, each [B, k, side, side]."""
        mean, logvar = self.encoder(x).chunk(2, 1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean, flattened: [B, k * side * side]."""
        return self.posterior(x)[0].flatten(1)

    def reconstruction_loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The configured pixel loss, summed per image and averaged over the batch."""
        if self.config.reconstruction == "bce":
            total = bernoulli_nll(logits.flatten(1), x.flatten(1)).sum()
        elif self.config.reconstruction == "l1":
            total = (torch.sigmoid(logits) - x).abs().sum()
        else:
            total = (torch.sigmoid(logits) - x).pow(2).sum()
        return total / len(x)

    @torch.no_grad()
    def _track_codes(self, z: torch.Tensor) -> None:
        """Move the per-channel code statistics towards this batch's (bias-corrected early on,
        as a mean of the first batches)."""
        decay = min(CODE_STATS_DECAY, float(self.code_updates) / (float(self.code_updates) + 1))
        per_channel = z.transpose(0, 1).flatten(1)
        self.code_mean.lerp_(per_channel.mean(1), 1 - decay)
        self.code_std.lerp_(per_channel.std(1).clamp_min(1e-3), 1 - decay)
        self.code_updates += 1

    def standardised(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.code_mean[:, None, None]) / self.code_std[:, None, None]

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        grad = torch.is_grad_enabled()
        autoencoder_trains = self.trains("autoencoder")
        with torch.set_grad_enabled(grad and autoencoder_trains):  # a part that waits: no graph
            mean, logvar = self.posterior(x)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            logits = self._logits(z)
            recon = self.reconstruction_loss(logits, x)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
        if self.training and autoencoder_trains:
            self._track_codes(z.detach())
        given = labels if self.prior_classes else None
        if given is not None and given.dim() != 1:
            raise ConfigError("ldm's prior takes class indices [B], not class weights")
        dropout = self.config.label_dropout if self.training else 0.0
        if given is not None and self.training and self.trains("prior"):
            self.label_counts += torch.bincount(given.long(), minlength=self.prior_classes)
        rows = self.prior_rows(len(x))
        codes = self.standardised(z[:rows].detach())
        given = None if given is None else given[:rows]
        with torch.set_grad_enabled(grad and self.trains("prior")):
            prior = self.prior.loss(codes, given, dropout)
        autoencoder = recon + self.config.kl_weight * kl
        terms = {
            "recon": recon.detach(),
            "kl": kl.detach(),
            "prior": prior.detach(),
            "mse": (torch.sigmoid(logits.detach()) - x).pow(2).mean(),
        }
        return LossOutput(autoencoder + prior, terms, {"autoencoder": autoencoder, "prior": prior})

    def draw_prior(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.solve_prior(n, generator, labels)

    @torch.no_grad()
    def solve_prior(
        self,
        n: int,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        path: list[torch.Tensor] | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """n codes [n, latent_dim] (on the CPU) from the prior: noise from `generator`, solved to
        codes, guided towards `labels` (none given: drawn from the training labels' frequencies;
        none at all for an unconditional prior); `path` receives each step's codes, flattened
        the same way; `steps` solver steps (default: the sampling_steps option)."""
        device = self.code_mean.device
        noise = torch.randn(n, *self.grid_shape, generator=generator).to(device)
        if labels is None and self.prior_classes:
            counts = self.label_counts.cpu().double()
            weights = counts if counts.sum() > 0 else torch.ones(self.prior_classes)
            labels = torch.multinomial(weights, n, replacement=True, generator=generator)
        config = self.config
        parts: list[torch.Tensor] = []
        paths: list[list[torch.Tensor]] = []
        for rows in torch.arange(n).split(SOLVE_ROWS):  # each row's solve is its own
            paths.append([])
            parts.append(
                self.prior.sample(
                    noise[rows],
                    None if labels is None else labels[rows],
                    config.guidance,
                    steps or config.sampling_steps,
                    paths[-1],
                    (config.guidance_from, config.guidance_to),
                    config.solver,
                )
            )
        scale = lambda v: v * self.code_std[:, None, None] + self.code_mean[:, None, None]
        if path is not None:
            path.extend(scale(torch.cat(step)).flatten(1).cpu() for step in zip(*paths))
        return scale(torch.cat(parts)).flatten(1).cpu()
