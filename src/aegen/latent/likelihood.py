"""Held-out ELBO and importance-sampled negative log-likelihood of a VAE.

log p(x) ~= logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k, z_i ~ q(z|x)
(Burda et al., 2016). The decoder is Bernoulli, so log p(x|z) = sum_j x_j l_j - softplus(l_j) for
logits l: for grayscale x in [0, 1] that is the negative of the summed BCE the VAE trains on (the
article's convention, not a normalised density); for binarised x it is a proper likelihood, the
convention of the literature (reported in nats).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from aegen.data.pixels import unit_images
from aegen.models.bernoulli import softplus
from aegen.models.vae import BernoulliVAE
from aegen.settings.evaluate import MOST_NLL_K

LOG_2PI = math.log(2 * math.pi)
ROWS_PER_CHUNK = 4096  # decoded draws at a time: their logits (12.8 MB) stay in the CPU's cache


@torch.no_grad()
def log_weights(
    model: BernoulliVAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
    rows_per_chunk: int | None = None,
) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i|x) for k posterior draws per image: [B, k] for x [B, 1, 28, 28]
    (for a conditional model log p(x, z_i | y) - log q(z_i | x, y) with the images' labels y).

    The draws are decoded rows_per_chunk at a time (default: the model's nll_rows): 4096 rows
    of logits (12.8 MB) stay in the CPU's cache between the matmul and the softplus that reads
    them; chunks of 32,768 rows made the whole estimate 1.6x slower (bench/README.md). A
    convolutional decoder's feature maps take far more room per draw: conv-vae decodes 64."""
    rows = rows_per_chunk or model.nll_rows
    pixels = x.flatten(1)
    mu, logvar = model.posterior(x, labels)
    std = torch.exp(0.5 * logvar)
    per_chunk = max(1, rows // len(x))
    chunks = []
    for start in range(0, k, per_chunk):
        draws = min(per_chunk, k - start)
        eps = torch.randn(len(x), draws, mu.shape[1], generator=generator, device=mu.device)
        z = mu.unsqueeze(1) + std.unsqueeze(1) * eps
        log_q = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + LOG_2PI).sum(-1)
        log_prior = model.log_prior(z)
        if model.conditional:  # its labels match the draws' last leading dimension
            logits = model.decode_logits(z.transpose(0, 1), labels).transpose(0, 1)
        else:
            logits = model.decode_logits(z)  # [B, draws, pixels]
        log_likelihood = torch.einsum("bkp,bp->bk", logits, pixels) - softplus(logits).sum(-1)
        chunks.append(log_likelihood + log_prior - log_q)
    return torch.cat(chunks, 1)


def _batch_weights(
    model: BernoulliVAE,
    images: torch.Tensor,
    k: int,
    seed: int,
    batch: int,
    labels: torch.Tensor | None,
    progress: bool | None,
) -> Iterator[torch.Tensor]:
    """log_weights of each batch of images in turn, [B, k], drawn from one generator seeded once:
    the mean and the per-image estimates see the same draws. uint8 images are brought to [0, 1]
    a batch at a time, so only one batch is ever held as floats."""
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    label_chunks = labels.split(batch) if labels is not None else [None] * len(images.split(batch))
    chunks = tqdm(
        list(zip(images.split(batch), label_chunks)),
        desc=f"NLL (k={k})",
        unit="batch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for chunk, chunk_labels in chunks:
        if chunk.dtype == torch.uint8:
            chunk = unit_images(chunk)
        yield log_weights(model, chunk, k, generator, chunk_labels)


@torch.no_grad()
def elbo_and_nll(
    model: BernoulliVAE,
    images: torch.Tensor,
    k: int = MOST_NLL_K,
    seed: int = 0,
    batch: int = 64,
    labels: torch.Tensor | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Mean ELBO and importance-sampled NLL (nats per image) of images [N, 1, 28, 28] in [0, 1],
    computed on the device the images are on (the model must be there too)."""
    elbo, nll = per_image_elbo_and_nll(model, images, k, seed, batch, labels, progress)
    n = len(images)
    return {
        "elbo": elbo.double().sum().item() / n,
        "nll": nll.double().sum().item() / n,
        "k": k,
        "images": n,
    }


@torch.no_grad()
def per_image_elbo_and_nll(
    model: BernoulliVAE,
    images: torch.Tensor,
    k: int = MOST_NLL_K,
    seed: int = 0,
    batch: int = 64,
    labels: torch.Tensor | None = None,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's ELBO and importance-sampled NLL, two float32 tensors [N] in nats on the
    images' device, for scores that rank single images (foreign-data detection). Images are
    [N, C, H, W] floats in [0, 1] or uint8 in 0..255; elbo_and_nll gives their means."""
    elbos, nlls = [], []
    for weights in _batch_weights(model, images, k, seed, batch, labels, progress):
        elbos.append(weights.mean(1))
        nlls.append(math.log(k) - torch.logsumexp(weights, 1))
    return torch.cat(elbos), torch.cat(nlls)


def binarise(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Stochastic binarisation: each pixel 1 with probability its grey value (fixed seed)."""
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))
