"""What the end of a run can tell of training that went wrong, so that `aegen train` says it
instead of leaving a user to find it in the pictures (issue 29):

- posterior collapse: a VAE whose code dimensions carry (almost) nothing about the image, by
  the held-out KL of each dimension (a dimension is active from ACTIVE_KL nats on; the run is
  flagged when fewer than ACTIVE_SHARE of its dimensions are);
- reconstructions no better than two baselines that need no training: the training images'
  mean image, and PCA with as many numbers per image as the model's code (fitted on up to
  PCA_IMAGES training images), by the held-out mean squared error in [0, 1];
- a stage switched before its measure settled (stage_plan.ended_unsettled);
- a checkerboard: the high-frequency power share of samples or reconstructions over
  HF_RATIO_LIMIT times the real images' (image_stats.py defines it).

`diagnose` returns the numbers behind each check and the findings, one sentence each; the
training (training/run.py) prints the findings and keeps both in the run folder's diagnosis.json.
"""

from __future__ import annotations

import math

import torch

from aegen.data.pixels import to_model_range, unit_images
from aegen.models.base import Stage
from aegen.models.stage_plan import ended_unsettled
from aegen.models.vae import BernoulliVAE
from aegen.models.vae_gan import VAEGAN
from aegen.scoring.compression import PCACodec
from aegen.scoring.image_stats import HF_RATIO_LIMIT, hf_ratio
from aegen.trained import TrainedModel

ACTIVE_KL = 0.01  # nats per image: below it a code dimension tells the decoder nothing
ACTIVE_SHARE = 0.25  # fewer active dimensions than this share of the code: collapse
HELD_OUT = 1000  # held-out images the checks look at
PCA_IMAGES = 2000


@torch.no_grad()
def kl_per_dimension(
    trained: TrainedModel, images: torch.Tensor, labels: torch.Tensor
) -> list[float]:
    """The mean KL(q(z|x) || N(0, I)) of each code dimension over held-out images, in nats;
    empty for a model with no Gaussian posterior against N(0, I)."""
    model = trained.model.eval()
    x = to_model_range(images, model.value_range)
    if isinstance(model, BernoulliVAE):
        mean, logvar = model.posterior(x, labels if trained.conditional else None)
    elif isinstance(model, VAEGAN):
        mean, logvar = model.posterior(x)
    else:
        return []
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)
    return kl.mean(0).tolist()


def pca_numbers(trained: TrainedModel) -> int:
    """How many numbers per image the model's code holds, for the PCA baseline: the code's size,
    or for codebook entries the grid's positions (one index each)."""
    model = trained.model
    if not model.continuous_codes:
        return math.prod(getattr(model, "grid_shape", (1, model.latent_dim))[1:])
    return model.latent_dim


def baseline_errors(trained: TrainedModel, images: torch.Tensor) -> dict[str, float]:
    """Held-out MSE in [0, 1] of the training mean image and of PCA with the code's numbers."""
    train = trained.split("train").images[:PCA_IMAGES]
    originals = unit_images(images)
    mean_image = unit_images(train).mean(0, keepdim=True)
    errors = {"mean_image_mse": (originals - mean_image).pow(2).mean().item()}
    numbers = pca_numbers(trained)
    if numbers < min(len(train), originals[0].numel()):
        pca = PCACodec(train, numbers)
        rebuilt = pca.decode(pca.encode(images))
        errors["pca_mse"] = (originals - rebuilt).pow(2).mean().item()
        errors["pca_components"] = numbers
    return errors


def diagnose(
    trained: TrainedModel,
    history: list[dict],
    planned: list[Stage],
    steps_per_epoch: int,
    samples: torch.Tensor,
) -> dict:
    """The numbers behind every check and the findings (sentences) of a finished run; `samples`
    [N, C, H, W] in [0, 1] are the run's own (its pictures')."""
    held_out = trained.split("val")
    images, labels = held_out.images[:HELD_OUT], held_out.labels[:HELD_OUT]
    originals = unit_images(images)
    rebuilt = trained.reconstruct(images, labels)
    numbers: dict = {"held_out_images": len(images)}
    findings: list[str] = []

    kl = kl_per_dimension(trained, images, labels)
    if kl:
        active = sum(value >= ACTIVE_KL for value in kl)
        numbers |= {"kl_total": sum(kl), "active_dimensions": active, "dimensions": len(kl)}
        if active < ACTIVE_SHARE * len(kl):
            findings.append(
                f"posterior collapse: {active} of {len(kl)} code dimensions carry {ACTIVE_KL} "
                f"nats or more (held-out KL {sum(kl):.3g} nats in all); the decoder ignores "
                "the code: try a smaller kl_weight, --kl-warmup, or another model"
            )

    mse = (originals - rebuilt).pow(2).mean().item()
    numbers["reconstruction_mse"] = mse
    baselines = baseline_errors(trained, images)
    numbers |= baselines
    if mse >= baselines["mean_image_mse"]:
        findings.append(
            f"the reconstructions (held-out MSE {mse:.3g}) are no better than the training "
            f"images' mean image ({baselines['mean_image_mse']:.3g}): the model has learned "
            "nothing of the images; train longer or check the data"
        )
    elif "pca_mse" in baselines and mse >= baselines["pca_mse"]:
        findings.append(
            f"the reconstructions (held-out MSE {mse:.3g}) are no better than PCA with "
            f"{baselines['pca_components']} numbers per image, as many as the code "
            f"({baselines['pca_mse']:.3g}): a linear code of that size rebuilds better, so "
            "the model is too small, or trained too short, for its code"
        )

    findings += ended_unsettled(planned, history, steps_per_epoch)

    for what, images_of_run, reference in (
        ("samples", samples, originals),
        ("reconstructions", rebuilt, originals),
    ):
        ratio = hf_ratio(images_of_run, reference)
        numbers[f"{what}_hf_ratio"] = ratio
        if ratio > HF_RATIO_LIMIT:
            findings.append(
                f"a checkerboard: the {what} have {ratio:.3g}x the real images' "
                f"high-frequency power (the bound is {HF_RATIO_LIMIT:g}x)"
            )
    return {"checks": numbers, "findings": findings}
