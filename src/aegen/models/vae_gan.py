"""VAE-GAN (Larsen et al., 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE whose reconstruction error is measured in the features of a GAN discriminator's l-th layer
(a Gaussian there, so half the squared feature distance), plus the prior KL and a GAN loss on
reconstructions and on decoded prior samples. The paper's update rule, one forward pass:

    encoder:        L_prior + L_llike
    decoder:        gamma * L_llike + L_GAN(generator side: make D call its images real)
    discriminator:  L_GAN(discriminator side: real images real, reconstructions and samples fake)

each group with its own Adam (see Trainer). Convolutional networks for image sizes divisible by 4
(28 for the MNIST family, 32 or 64 by configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import Autoencoder, LossOutput, ModelConfig, option
from aegen.models.conv_nets import check_conv_sizes, resize_conv, upsample_option


@dataclass
class VAEGANConfig(ModelConfig):
    """Sizes, gamma (weight of the feature reconstruction in the decoder's loss) and kl_weight."""

    hidden_channels: tuple[int, ...] = option((32, 64), "channels of the two stride-2 convolutions")
    latent_dim: int = option(20, "numbers in the code")
    gamma: float = option(1.0, "weight of the feature reconstruction in the decoder's loss")
    kl_weight: float = option(1.0, "weight of the KL term (1: the VAE; other values: a beta-VAE)")
    upsample: str = upsample_option()

    def check(self) -> None:
        super().check()
        check_conv_sizes("vae-gan", self.image_size, self.hidden_channels, self.upsample)
        if len(self.hidden_channels) != 2:
            raise ConfigError("vae-gan needs two hidden channel counts")
        if self.gamma < 0 or self.kl_weight < 0:
            raise ConfigError("gamma and kl_weight must be >= 0")


class Discriminator(nn.Module):
    """Conv(4, s2) LeakyReLU -> Conv(4, s2) LeakyReLU = the layer-l features -> linear logit."""

    def __init__(self, channels: int, widths: tuple[int, ...], side: int):
        super().__init__()
        narrow, wide = widths
        self.features = nn.Sequential(
            nn.Conv2d(channels, narrow, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(narrow, wide, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(wide * side * side, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, F] of layer l and the logit [B] that x is real."""
        h = self.features(x)
        return h, self.head(h).squeeze(1)


class VAEGAN(Autoencoder):
    """Encoder Conv-BN-ReLU x2 -> mu, logvar; decoder linear -> (resize x2, conv 3x3, BN, ReLU)
    x2 -> conv 3x3, sigmoid (conv_nets.py: no checkerboard)."""

    config_class = VAEGANConfig

    value_range = (0.0, 1.0)
    variational = True
    default_lr = 2e-4
    adam_betas = (0.5, 0.999)  # the usual GAN setting: less momentum against oscillation

    config: VAEGANConfig

    def __init__(self, config: VAEGANConfig | None = None):
        config = config or VAEGANConfig()
        super().__init__(config)
        c, (narrow, wide), side = config.channels, config.hidden_channels, config.image_size // 4
        self.image_shape = (c, config.image_size, config.image_size)
        self.latent_dim = config.latent_dim
        self.feature_shape = (wide, side, side)
        features = wide * side * side
        self.encoder = nn.Sequential(
            nn.Conv2d(c, narrow, 4, stride=2, padding=1),
            nn.BatchNorm2d(narrow),
            nn.ReLU(),
            nn.Conv2d(narrow, wide, 4, stride=2, padding=1),
            nn.BatchNorm2d(wide),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(features, config.latent_dim)
        self.fc_logvar = nn.Linear(features, config.latent_dim)
        self.fc_decode = nn.Sequential(
            nn.Linear(config.latent_dim, features), nn.BatchNorm1d(features), nn.ReLU()
        )
        self.decoder = (
            _transposed_decoder(wide, narrow, c)
            if config.upsample == "transpose"
            else _resizing_decoder(wide, narrow, c)
        )
        self.discriminator = Discriminator(c, (narrow, wide), side)

    def update_groups(self) -> dict[str, list[nn.Parameter]]:
        encoder = [
            *self.encoder.parameters(),
            *self.fc_mu.parameters(),
            *self.fc_logvar.parameters(),
        ]
        decoder = [*self.fc_decode.parameters(), *self.decoder.parameters()]
        return {
            "encoder": encoder,
            "decoder": decoder,
            "discriminator": list(self.discriminator.parameters()),
        }

    # Its loss measures images in the discriminator's features, which move every epoch; the
    # pixels' cross-entropy is a fixed yardstick for the best weights and early stopping.
    selection_metric = "pixel_bce"

    @property
    def has_kl_term(self) -> bool:
        return True

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.fc_decode(z).view(-1, *self.feature_shape))

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        """Per-image means of L_prior, L_llike and the GAN losses; see the module docstring."""
        batch = len(x)
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        z_prior = torch.randn_like(mu)
        decoded = self.decode(torch.cat([z, z_prior]))  # reconstructions, then prior samples
        features, logits = self.discriminator(torch.cat([x, decoded]))
        real_features, rebuilt_features = features[:batch], features[batch : 2 * batch]
        real_logits, fake_logits = logits[:batch], logits[batch:]

        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
        # Gaussian with unit variance in feature space: -log p = 0.5 * squared distance + const.
        llike = 0.5 * (rebuilt_features - real_features.detach()).pow(2).sum() / batch
        ones, zeros = torch.ones_like(fake_logits), torch.zeros_like(fake_logits)
        d_loss = F.binary_cross_entropy_with_logits(
            real_logits, ones[:batch]
        ) + F.binary_cross_entropy_with_logits(fake_logits, zeros)
        g_loss = F.binary_cross_entropy_with_logits(fake_logits, ones)  # non-saturating form
        encoder_loss = (self.kl_scale * self.config.kl_weight) * kl + llike
        with torch.no_grad():
            pixel_bce = (
                F.binary_cross_entropy(decoded[:batch].clamp(1e-6, 1 - 1e-6), x, reduction="sum")
                / batch
            )
            d_real = torch.sigmoid(real_logits).mean()
            d_fake = torch.sigmoid(fake_logits).mean()
        return LossOutput(
            encoder_loss.detach(),
            {
                "kl": kl.detach(),
                "feature_recon": llike.detach(),
                "pixel_bce": pixel_bce,
                "d_loss": d_loss.detach(),
                "g_loss": g_loss.detach(),
                "d_real": d_real,
                "d_fake": d_fake,
            },
            {
                "encoder": encoder_loss,
                "decoder": self.config.gamma * llike + g_loss,
                "discriminator": d_loss,
            },
        )


def _resizing_decoder(wide: int, narrow: int, c: int) -> nn.Sequential:
    """Features [B, wide, S/4, S/4] -> images [B, c, S, S]: nearest x2 and a 3x3 conv, twice."""
    return nn.Sequential(
        *resize_conv(wide, narrow),
        nn.BatchNorm2d(narrow),
        nn.ReLU(),
        *resize_conv(narrow, narrow),
        nn.BatchNorm2d(narrow),
        nn.ReLU(),
        nn.Conv2d(narrow, c, 3, padding=1),
        nn.Sigmoid(),
    )


def _transposed_decoder(wide: int, narrow: int, c: int) -> nn.Sequential:
    """The decoder of runs recorded before the `upsample` option: two transposed convs."""
    return nn.Sequential(
        nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1),
        nn.BatchNorm2d(narrow),
        nn.ReLU(),
        nn.ConvTranspose2d(narrow, c, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )
