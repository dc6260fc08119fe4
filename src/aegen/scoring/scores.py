"""The scores of `aegen evaluate`: held-out reconstruction, likelihoods and sample quality,
written to the run's scores.json.

Protocol (fixed seeds, so the same run and seed give the same numbers): the data set's test
split is the real reference (for a user's folder or array, which has none, the run's held-out
validation images, never trained on); every sampler draws the same number of samples (default
10,000); features and predictions come from the judge (see classifier.py), named in the protocol
with its accuracy, so that scores from different judges are never compared. As a floor, the same
scores are computed for real training images against the reference ("real data" row), and as
the floor of the samplers, for the model's reconstructions of those images ("reconstructed data":
what a perfect density on the training codes would give). Beside the judge's scores, each image
set gets pixel statistics (image_stats.py): its high-frequency power share against the
reference's (checkerboard textures), and the held-out reconstructions' PSNR, SSIM and colour error.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from aegen.data.datasets import ImageSet
from aegen.data.pixels import to_model_range, unit_images
from aegen.errors import ConfigError
from aegen.export.files import save_image_grid
from aegen.files.atomic import write_json
from aegen.latent.likelihood import binarise, elbo_and_nll
from aegen.models.base import Autoencoder, LossOutput
from aegen.models.vae import BernoulliVAE
from aegen.runs.folder import SCORES, read_history
from aegen.scoring.budget import NllPlan, estimate_line, nll_plan, phase, sample_count
from aegen.scoring.classifier import (
    Classifier,
    load_classifier,
    own_data_classifier,
    random_feature_cnn,
)
from aegen.scoring.image_stats import (
    fidelity_protocol,
    hf_ratio,
    hf_share,
    high_frequency_power,
    reconstruction_fidelity,
)
from aegen.scoring.quality import (
    CONFIDENT,
    NEIGHBOURS,
    Reference,
    class_coverage,
    frechet_distance,
    kernel_distance,
    precision_recall,
)
from aegen.scoring.quality import reference as real_reference
from aegen.trained import TrainedModel, standard_samplers

log = logging.getLogger("aegen")
SAMPLE_CHUNK = 1024  # samples decoded and judged at a time
LEAST_IMAGES = NEIGHBOURS + 1  # in each set scored: a k-th neighbour other than itself

SAMPLE_RULE = (
    "the reference's image count, at least 1,000 and at most 10,000, and no more than the "
    "training split holds (scoring/budget.py); the real-data and floor rows score as many"
)
KID_PROTOCOL = (
    "unbiased MMD^2, cubic polynomial kernel on the judge's features, mean of 10 disjoint "
    "blocks (fewer on tiny sets) with the blocks' standard error"
)


@torch.no_grad()
def classify(classifier: Classifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, 128] and class probabilities [N, classes] of images [N, C, H, W] in [0, 1]."""
    classifier.eval()
    features, probabilities = [], []
    for chunk in images.split(2048):
        h = classifier.features(chunk)
        features.append(h)
        probabilities.append(F.softmax(classifier.head(h), 1))
    return torch.cat(features), torch.cat(probabilities)


def quality_scores(
    classifier: Classifier,
    images: torch.Tensor | Iterable[torch.Tensor],
    real: Reference,
    labelled: bool = True,
    reference_hf_share: float | None = None,
) -> dict:
    """FD-aegen, KID (with its standard error), precision, recall and (when the judge knows
    classes) class coverage of images (one tensor, or chunks of them) against the real
    reference (its features, and what the scores need of them alone, computed once), with how
    many images were scored; their hf_share, and its ratio to the reference's when given."""
    chunks = [images] if torch.is_tensor(images) else images
    parts, high, total = [], 0.0, 0.0
    for chunk in chunks:
        parts.append(classify(classifier, chunk))
        chunk_high, chunk_total = high_frequency_power(chunk)
        high, total = high + chunk_high, total + chunk_total
    features = torch.cat([f for f, _ in parts])
    probabilities = torch.cat([p for _, p in parts])
    precision, recall = precision_recall(real, features)
    kid, kid_se = kernel_distance(features, real)
    share = high / total if total > 0 else 0.0  # as image_stats.hf_share, from the same chunks
    return {
        "images": len(features),
        "fd_aegen": frechet_distance(features, real.features),
        "kid": kid,
        "kid_se": kid_se,
        "precision": precision,
        "recall": recall,
        **(class_coverage(probabilities) if labelled else {}),
        "hf_share": share,
        **({} if reference_hf_share is None else {"hf_ratio": hf_ratio(share, reference_hf_share)}),
    }


def judge(
    trained: TrainedModel, reference: ImageSet, reference_name: str
) -> tuple[Classifier, dict]:
    """The classifier whose features score this run: the data set's own cached one for the
    built-in sets at their native 28x28x1; for other images of two or more classes one trained
    on the run's training split; for unlabelled images (or one class) the seeded random CNN."""
    settings = trained.config.settings
    shape = tuple(trained.model.image_shape)
    if trained.has_test_split and shape == (1, 28, 28):
        return load_classifier(settings.dataset, trained.data_root)
    train = trained.split("train")
    if not train.labelled or len(train.labels.unique()) < 2:
        return random_feature_cnn(shape[0], shape[1])
    split_key = f"{settings.seed}-{settings.val_fraction}"
    key = hashlib.sha256(
        f"{settings.dataset}|{train.digest}|{shape}|{split_key}".encode()
    ).hexdigest()[:24]
    return own_data_classifier(
        settings.dataset,
        (train.images, train.labels),
        (reference.images, reference.labels),
        len(train.classes),
        key,
        reference_name,
    )


@torch.no_grad()
def reconstruction_scores(
    trained: TrainedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
    original_hf_share: float | None = None,
) -> dict:
    """Mean model loss (its own units, without a learned prior's part), per-pixel MSE in
    [0, 1], PSNR, SSIM, colour error and the high-frequency share (and its ratio to the
    originals', measured here unless given) of reconstructions of uint8 images."""
    model = trained.model.eval()
    sums: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]), prior_waiting(model):
        torch.manual_seed(seed)
        for chunk, chunk_labels in zip(images.split(1024), labels.split(1024)):
            for part, value in loss_parts(
                model.loss(to_model_range(chunk, model.value_range), chunk_labels)
            ).items():
                sums[part] = sums.get(part, 0.0) + value * len(chunk)
    original = unit_images(images)
    rebuilt = trained.reconstruct(images, labels)
    mse = (rebuilt - original).pow(2).mean().item()
    share = hf_share(rebuilt)
    return {
        **{key: total / len(images) for key, total in sums.items()},
        "pixel_mse": mse,
        "images": len(images),
        **reconstruction_fidelity(original, rebuilt),
        "hf_share": share,
        "hf_ratio": hf_ratio(share, original if original_hf_share is None else original_hf_share),
    }


@contextmanager
def prior_waiting(model: Autoencoder) -> Iterator[None]:
    """A two-stage model's loss as in its autoencoder stage, where the prior waits and reports
    its loss on an eighth of each batch (GridAutoencoder.prior_rows): on all 10,000 test codes,
    ldm's prior passes were 4/5 of the reconstructions' scoring (bench/ldm_speed.py)."""
    groups = model.training_groups
    if "prior" in model.update_groups():
        model.training_groups = tuple(g for g in model.update_groups() if g != "prior")
    try:
        yield
    finally:
        model.training_groups = groups


def loss_parts(output: LossOutput) -> dict[str, float]:
    """model_loss: the model's loss without its prior's part (a two-stage model's
    autoencoder loss; its prior's, prior_loss, beside it)."""
    groups = output.group_losses or {}
    if {"autoencoder", "prior"} <= groups.keys():
        return {"model_loss": groups["autoencoder"].item(), "prior_loss": groups["prior"].item()}
    return {"model_loss": output.loss.item()}


def likelihood_kinds(trained: TrainedModel) -> int:
    """How many NLLs likelihood_scores estimates: grey images also binarised, colour not."""
    return 2 if trained.model.image_shape[0] == 1 else 1


def likelihood_scores(
    trained: TrainedModel, images: torch.Tensor, labels: torch.Tensor, plan: NllPlan, seed: int
) -> dict:
    """The importance-sampled NLL and ELBO under the model's own pixel likelihood (a Bernoulli
    on values in [0, 1]: the summed BCE it trains on), and for grey images also of the
    binarised images, where the Bernoulli is a proper likelihood (the literature's MNIST
    convention); colour values binarised mean nothing and are not scored so."""
    model = trained.model
    assert isinstance(model, BernoulliVAE)  # the models with a pixel likelihood
    subset = images[: plan.images]
    given = labels[: plan.images] if trained.conditional else None
    colour = "grey" if subset.shape[1] == 1 else "colour"
    probe = subset[:8]
    started = time.perf_counter()
    elbo_and_nll(model, probe, plan.k, seed, labels=None if given is None else given[:8])
    per_image = (time.perf_counter() - started) / len(probe)
    kinds = likelihood_kinds(trained)
    log.info(f"{trained.name}: " + estimate_line("NLL", per_image * kinds, len(subset), "images"))
    scores: dict[str, Any] = {
        "pixel_bce": {
            **elbo_and_nll(model, subset, plan.k, seed, labels=given),
            "likelihood": f"Bernoulli of {colour} pixel values in [0, 1] (summed BCE)",
        }
    }
    if likelihood_kinds(trained) == 2:
        scores["binarised"] = {
            **elbo_and_nll(model, binarise(subset, seed), plan.k, seed, labels=given),
            "likelihood": "Bernoulli of binarised pixels (a proper likelihood)",
        }
    scores["rule"] = plan.rule
    if trained.conditional:
        scores["note"] = "conditional on the true label: -log p(x | y)"
    return scores


def images_seen(trained: TrainedModel, train_images: int) -> int:
    """Images the training went through: its epochs times its training split."""
    return len(read_history(trained.run_dir)) * train_images


def _timed_draw(trained: TrainedModel, name: str, n: int, seed: int) -> Iterator[torch.Tensor]:
    """A fitted sampler's samples chunk by chunk, after a line that says what drawing them
    costs (timed on a first small draw, not part of the scores) and then what it took."""
    probe = min(64, n)
    started = time.perf_counter()
    trained.sample(probe, seed=(seed + 1) % 2**63, sampler=name)
    per_sample = (time.perf_counter() - started) / probe
    log.info(f"{trained.name} / {name}: " + estimate_line("drawing", per_sample, n, "samples"))
    with phase(f"{trained.name} / {name}: drawn and judged"):
        chunks = trained.sample_in_chunks(n, seed=seed, sampler=name, chunk=SAMPLE_CHUNK)
        total = math.ceil(n / SAMPLE_CHUNK)
        yield from tqdm(chunks, desc=name, total=total, leave=False, disable=None)


def _check_count(count: int, what: str) -> None:
    if count < LEAST_IMAGES:
        raise ConfigError(
            f"evaluating needs at least {LEAST_IMAGES} {what} (precision, recall and KID "
            f"compare neighbourhoods of images), got {count}"
        )


def score_run(
    trained: TrainedModel,
    samplers: list[str] | None = None,
    n_samples: int | None = None,
    nll_k: int | None = None,
    nll_images: int | None = None,
    seed: int = 0,
    classifier: tuple[Classifier, dict] | None = None,
) -> dict:
    """Score a run on its data set's test split and write RUN/scores.json; returns the scores.
    n_samples, nll_k and nll_images default to the budget's rule (scoring/budget.py)."""

    samplers = samplers or standard_samplers(type(trained.model))
    _check_count(n_samples or LEAST_IMAGES, "samples per sampler")
    dataset = trained.config.dataset
    test = trained.split("test")
    train = trained.split("train")
    _check_count(len(test), "reference images")
    _check_count(len(train), "training images")
    n = n_samples or sample_count(len(test), len(train))
    reference = (
        f"{dataset} test split ({len(test)} images)"
        if trained.has_test_split
        else f"the run's held-out validation images ({len(test)}; the data has no test split)"
    )
    with phase("judge ready"):
        net, record = classifier or judge(trained, test, reference)
    labelled = record.get("kind") != "random-cnn"
    real = unit_images(test.images)
    real_side = real_reference(classify(net, real)[0])  # its radii and KID terms, once
    real_hf = hf_share(real)
    metrics: dict = {
        "run": str(trained.run_dir),
        "model": trained.name,
        "weights": trained.weights,
        "dataset": dataset,
        "protocol": {
            "reference": reference,
            "reference_images": len(test),
            "samples_per_sampler": n,
            "sample_count": "as given (--n-samples)" if n_samples else SAMPLE_RULE,
            "seed": seed,
            "features": (
                "penultimate layer (128) of aegen's classifier"
                if labelled
                else "penultimate layer (128) of aegen's classifier CNN at a fixed random "
                "initialisation (random-cnn, seed 0): the data has no labels to train a judge"
            ),
            "judge": record.get("kind", "trained-cnn"),
            "precision_recall_k": NEIGHBOURS,
            "confident_probability": CONFIDENT,
            "kid": KID_PROTOCOL,
            **fidelity_protocol(),
            "reference_hf_share": real_hf,
        },
        "classifier": record,
    }
    with phase(f"{trained.name}: held-out reconstructions scored"):
        recon = reconstruction_scores(trained, test.images, test.labels, seed, real_hf)
    metrics["reconstruction"] = recon
    ssim = f"  SSIM {recon['ssim']:.3f}" if "ssim" in recon else ""
    prior = f"  (prior's loss {recon['prior_loss']:.4g})" if "prior_loss" in recon else ""
    log.info(
        f"{trained.name}: held-out reconstruction loss {recon['model_loss']:.4g}{prior}  MSE "
        f"{recon['pixel_mse']:.4f}  PSNR {recon['psnr']:.2f} dB{ssim}  colour error "
        f"{recon['colour_error']:.2f} (0-255)  deltaE {recon['delta_e']:.2f}  HF share "
        f"{recon['hf_share']:.4f} ({recon['hf_ratio']:.2f}x the originals'; reference "
        f"{real_hf:.4f})"
    )
    if trained.model.pixel_likelihood:
        seen = images_seen(trained, len(train))
        plan = nll_plan(len(test), seen, nll_k, nll_images, likelihood_kinds(trained))
        log.info(
            f"{trained.name}: NLL with k={plan.k} draws on each of {plan.images:,d} images "
            f"({plan.rule})"
        )
        with phase(f"{trained.name}: NLL"):
            metrics["likelihood"] = likelihood_scores(trained, real, test.labels, plan, seed)
        for scores in metrics["likelihood"].values():
            if isinstance(scores, dict):
                log.info(
                    f"{trained.name}: NLL {scores['nll']:.2f} nats, ELBO {scores['elbo']:.2f} "
                    f"({scores['likelihood']})"
                )
    train_images, train_labels = train.images[:n], train.labels[:n]
    metrics["protocol"]["real_data_images"] = len(train_images)
    with phase(f"{trained.name}: real data and floor judged"):
        metrics["real_data"] = quality_scores(
            net, unit_images(train_images), real_side, labelled, real_hf
        )
        # The floor of the samplers: a perfect density on the training codes would give
        # these, the decoded codes of training images (the test images are the reference).
        rebuilt = (
            trained.reconstruct(part, labels)
            for part, labels in zip(train_images.split(4096), train_labels.split(4096))
        )
        metrics["reconstructed_data"] = quality_scores(net, rebuilt, real_side, labelled, real_hf)
    metrics["samplers"] = {}
    for given in samplers:
        with phase(f"{trained.name} / {given}: ready to draw"):  # fitted (and saved) if needed
            name = trained.sampler(given).name  # gmm-10 is gmm
        if name in metrics["samplers"]:
            continue
        chunks = _timed_draw(trained, name, n, seed)
        first = next(chunks)
        save_image_grid(trained.run_dir / f"samples-{name}.png", first[:64])
        metrics["samplers"][name] = quality_scores(
            net, itertools.chain([first], chunks), real_side, labelled, real_hf
        )
    write_json(trained.run_dir / SCORES, metrics)
    return metrics
