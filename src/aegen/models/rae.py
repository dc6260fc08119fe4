"""The regularised autoencoder (Ghosh et al., "From variational to deterministic autoencoders",
ICLR 2020): a deterministic autoencoder whose codes are kept small and whose decoder is kept
smooth, and which generates by fitting a density to its training codes after training (ex-post
density estimation: a 10-component Gaussian mixture by default, any fitted sampler works).

Loss = reconstruction error + code_weight * |z|^2 / 2 + the decoder's regulariser:
- "l2": decoder_weight * |theta_decoder|^2 / 2 (weight decay on the decoder alone, RAE-L2);
- "gp": decoder_weight * |J|_F^2, the squared Frobenius norm of the decoder's Jacobian at the
  codes (RAE-GP), estimated with one random probe v as |J^T v|^2 (Hutchinson's estimator:
  E_v |J^T v|^2 = |J|_F^2 for v ~ N(0, I)), one extra backward pass instead of one per code
  dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aegen.errors import ConfigError
from aegen.models.base import LossOutput, option
from aegen.models.code_ae import CodeAEConfig, ConvCodeAE, reconstruction_error

REGULARISERS = ("l2", "gp")


@dataclass
class RAEConfig(CodeAEConfig):
    """The code size, the weight of the code penalty and the decoder's regulariser."""

    model = "rae"
    code_weight: float = option(1e-4, "weight of |z|^2 / 2, the penalty on the codes' size")
    regulariser: str = option("l2", "the decoder's regulariser: l2 (weight decay) or gp")
    decoder_weight: float = option(1e-3, "weight of the decoder's regulariser")

    def check(self) -> None:
        super().check()
        if self.regulariser not in REGULARISERS:
            raise ConfigError(
                f"rae's regulariser is one of {', '.join(REGULARISERS)}, got {self.regulariser!r}"
            )
        if self.code_weight < 0 or self.decoder_weight < 0:
            raise ConfigError("code_weight and decoder_weight must be >= 0")


class RAE(ConvCodeAE):
    """The conv autoencoder with a 16-d deterministic code, sampled by a mixture on its codes."""

    config_class = RAEConfig

    ex_post_sampler = "gmm"

    config: RAEConfig

    def __init__(self, config: RAEConfig | None = None):
        super().__init__(config or RAEConfig())

    @property
    def graphable(self) -> bool:
        return self.config.regulariser != "gp"  # its penalty differentiates inside the loss

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        z = self.encode(x)
        config = self.config
        if config.regulariser == "gp":
            logits, smoothness = self._logits_and_jacobian_norm(z)
        else:
            logits = self.decode_logits(z)
            smoothness = torch.stack([p.pow(2).sum() for p in self.decoder_parameters()]).sum() / 2
        recon = reconstruction_error(torch.sigmoid(logits), x)
        code = z.pow(2).sum() / (2 * len(x))
        loss = recon + config.code_weight * code + config.decoder_weight * smoothness
        terms = {"recon": recon.detach(), "code": code.detach(), "decoder": smoothness.detach()}
        return LossOutput(loss, terms)

    def _logits_and_jacobian_norm(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's logits at z and |J^T v|^2 per image (batch mean) for a random probe v,
        differentiable while training; also taken under no_grad (validation)."""
        training = torch.is_grad_enabled()
        with torch.enable_grad():
            at = z if z.requires_grad else z.detach().requires_grad_()
            logits = self.decode_logits(at)
            probe = torch.randn_like(logits)
            (pulled,) = torch.autograd.grad((logits * probe).sum(), at, create_graph=training)
        return logits, pulled.pow(2).sum() / len(z)
