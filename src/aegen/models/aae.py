"""The adversarial autoencoder (Makhzani et al., 2015): a deterministic autoencoder whose
aggregate posterior (the distribution of all its codes) is pushed to the prior N(0, I) by a
discriminator on codes, as a GAN pushes images; decoding prior draws then gives images.

Two update groups, each minimising its own loss from one forward pass (the trainer's rule for
several optimizers, as VAE-GAN uses): the autoencoder (encoder and decoder) minimises the
reconstruction error plus adversarial_weight times the non-saturating GAN loss of its codes
(its encoder is the generator); the discriminator tells prior draws (real) from codes (fake).
The paper alternates a reconstruction phase and a regularisation phase per batch; updating
both groups from the same batch at once is the simultaneous form of the same game.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aegen.errors import ConfigError
from aegen.models.base import LossOutput, option
from aegen.models.code_ae import CodeAEConfig, ConvCodeAE, reconstruction_error


@dataclass
class AAEConfig(CodeAEConfig):
    """The code size, the discriminator's width and the adversarial term's weight."""

    model = "aae"
    latent_dim: int = option(8, "numbers in the code")
    discriminator_width: int = option(256, "width of the code discriminator's two hidden layers")
    adversarial_weight: float = option(1.0, "weight of the codes' GAN loss in the autoencoder's")

    def check(self) -> None:
        super().check()
        if self.adversarial_weight < 0:
            raise ConfigError(f"adversarial_weight must be >= 0, got {self.adversarial_weight}")


class AAE(ConvCodeAE):
    """The conv autoencoder with an 8-d code and an MLP discriminator on codes; samples from the
    prior."""

    config_class = AAEConfig

    variational = True  # its codes are trained to follow the prior
    default_lr = 5e-4
    adam_betas = (0.5, 0.999)  # the usual GAN setting: less momentum against oscillation
    selection_metric = "recon"  # its loss moves with the discriminator it plays against

    config: AAEConfig

    def __init__(self, config: AAEConfig | None = None):
        config = config or AAEConfig()
        super().__init__(config)
        width = config.discriminator_width
        self.discriminator = nn.Sequential(
            nn.Linear(config.latent_dim, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, 1),
        )

    def update_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "autoencoder": [*self.encoder_parameters(), *self.decoder_parameters()],
            "discriminator": list(self.discriminator.parameters()),
        }

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        z = self.encode(x)
        recon = reconstruction_error(self.decode(z), x)
        fake = self.discriminator(z).squeeze(1)
        real = self.discriminator(torch.randn_like(z)).squeeze(1)
        ones, zeros = torch.ones_like(fake), torch.zeros_like(fake)
        fooling = F.binary_cross_entropy_with_logits(fake, ones)  # the encoder's GAN loss
        telling = F.binary_cross_entropy_with_logits(
            real, ones
        ) + F.binary_cross_entropy_with_logits(fake, zeros)
        autoencoder = recon + self.config.adversarial_weight * fooling
        terms = {
            "recon": recon.detach(),
            "fooling": fooling.detach(),
            "discriminator": telling.detach(),
            "d_real": torch.sigmoid(real).mean().detach(),
            "d_fake": torch.sigmoid(fake).mean().detach(),
        }
        return LossOutput(
            autoencoder, terms, {"autoencoder": autoencoder, "discriminator": telling}
        )
