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
from collections.abc import Iterable

import torch
from torch.nn import functional as F

from aegen.latent.likelihood import binarise, elbo_and_nll
from aegen.models.vae import BernoulliVAE
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
    class_coverage,
    frechet_distance,
    precision_recall,
)
from aegen.store.atomic import write_json
from aegen.store.datasets import ImageSet, to_model_range, unit_images
from aegen.store.exports import save_image_grid
from aegen.store.run_folder import SCORES
from aegen.trained import TrainedModel, standard_samplers

log = logging.getLogger("aegen")


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
    real_features: torch.Tensor,
    labelled: bool = True,
    reference_hf_share: float | None = None,
) -> dict:
    """FD-aegen, precision, recall and (when the judge knows classes) class coverage of images
    (one tensor, or chunks of them) against the real reference's features; their hf_share, and
    its ratio to the reference's when given."""
    chunks = [images] if torch.is_tensor(images) else images
    parts, high, total = [], 0.0, 0.0
    for chunk in chunks:
        parts.append(classify(classifier, chunk))
        chunk_high, chunk_total = high_frequency_power(chunk)
        high, total = high + chunk_high, total + chunk_total
    features = torch.cat([f for f, _ in parts])
    probabilities = torch.cat([p for _, p in parts])
    precision, recall = precision_recall(real_features, features)
    share = high / total if total > 0 else 0.0  # as image_stats.hf_share, from the same chunks
    return {
        "fd_aegen": frechet_distance(features, real_features),
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
    data = trained.config["data"]
    shape = tuple(trained.model.image_shape)
    if trained.has_test_split and shape == (1, 28, 28):
        return load_classifier(data["dataset"], trained.data_root)
    train = trained.split("train")
    if not train.labelled or len(train.labels.unique()) < 2:
        return random_feature_cnn(shape[0], shape[1])
    split_key = f"{trained.config['train']['seed']}-{trained.config['train']['val_fraction']}"
    key = hashlib.sha256(
        f"{data['dataset']}|{train.digest}|{shape}|{split_key}".encode()
    ).hexdigest()[:24]
    return own_data_classifier(
        data["dataset"],
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
    """Mean model loss (its own units), per-pixel MSE in [0, 1], PSNR, SSIM, colour error and
    the high-frequency share (and its ratio to the originals', measured here unless given) of
    reconstructions of uint8 images."""
    model = trained.model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        total = sum(
            model.loss(to_model_range(chunk, model.value_range), chunk_labels).loss.item()
            * len(chunk)
            for chunk, chunk_labels in zip(images.split(1024), labels.split(1024))
        )
    original = unit_images(images)
    rebuilt = trained.reconstruct(images, labels)
    mse = (rebuilt - original).pow(2).mean().item()
    share = hf_share(rebuilt)
    return {
        "model_loss": total / len(images),
        "pixel_mse": mse,
        "images": len(images),
        **reconstruction_fidelity(original, rebuilt),
        "hf_share": share,
        "hf_ratio": hf_ratio(share, original if original_hf_share is None else original_hf_share),
    }


def _hf_line(scores: dict) -> str:
    return f"HF share {scores['hf_share']:.4f} ({scores['hf_ratio']:.2f}x the reference's)"


def score_run(
    trained: TrainedModel,
    samplers: list[str] | None = None,
    n_samples: int = 10_000,
    nll_k: int = 1000,
    nll_images: int | None = None,
    seed: int = 0,
    classifier: tuple[Classifier, dict] | None = None,
) -> dict:
    """Score a run on its data set's test split and write RUN/scores.json; returns the scores."""

    samplers = samplers or standard_samplers(type(trained.model))
    dataset = trained.config["data"]["dataset"]
    test = trained.split("test")
    reference = (
        f"{dataset} test split ({len(test)} images)"
        if trained.has_test_split
        else f"the run's held-out validation images ({len(test)}; the data has no test split)"
    )
    net, record = classifier or judge(trained, test, reference)
    labelled = record.get("kind") != "random-cnn"
    real = unit_images(test.images)
    real_features, _ = classify(net, real)
    real_hf = hf_share(real)
    metrics: dict = {
        "run": str(trained.run_dir),
        "model": trained.name,
        "weights": trained.weights,
        "dataset": dataset,
        "protocol": {
            "reference": reference,
            "samples_per_sampler": n_samples,
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
            **fidelity_protocol(),
            "reference_hf_share": real_hf,
        },
        "classifier": record,
        "reconstruction": reconstruction_scores(trained, test.images, test.labels, seed, real_hf),
    }
    recon = metrics["reconstruction"]
    ssim = f"  SSIM {recon['ssim']:.3f}" if "ssim" in recon else ""
    log.info(
        f"{trained.name}: held-out reconstruction MSE {recon['pixel_mse']:.4f}  PSNR "
        f"{recon['psnr']:.2f} dB{ssim}  colour error {recon['colour_error']:.2f} (0-255)  deltaE "
        f"{recon['delta_e']:.2f}  HF share {recon['hf_share']:.4f} ({recon['hf_ratio']:.2f}x the "
        f"originals'; reference {real_hf:.4f})"
    )
    if trained.model.pixel_likelihood:
        model = trained.model
        assert isinstance(model, BernoulliVAE)  # the models with a pixel likelihood
        subset = real[:nll_images] if nll_images else real
        labels = test.labels[: len(subset)] if trained.conditional else None
        metrics["likelihood"] = {
            "grayscale_bce": elbo_and_nll(model, subset, nll_k, seed, labels=labels),
            "binarised": elbo_and_nll(model, binarise(subset, seed), nll_k, seed, labels=labels),
        }
        if trained.conditional:
            metrics["likelihood"]["note"] = "conditional on the true label: -log p(x | y)"
        log.info(f"{trained.name}: likelihood {metrics['likelihood']}")
    train = trained.split("train")
    train_images, train_labels = train.images[:n_samples], train.labels[:n_samples]
    metrics["protocol"]["real_data_images"] = len(train_images)
    metrics["real_data"] = quality_scores(
        net, unit_images(train_images), real_features, labelled, real_hf
    )
    # The floor of every sampler: a perfect density on the training codes would give exactly
    # these, the decoded codes of training images (the test images are the reference itself).
    rebuilt = (
        trained.reconstruct(part, labels)
        for part, labels in zip(train_images.split(4096), train_labels.split(4096))
    )
    metrics["reconstructed_data"] = quality_scores(net, rebuilt, real_features, labelled, real_hf)
    for key, name in (("real_data", "real data"), ("reconstructed_data", "reconstructed data")):
        log.info(f"{trained.name} / {name}: {_hf_line(metrics[key])}")
    metrics["samplers"] = {}
    for name in dict.fromkeys(trained.sampler(given).name for given in samplers):  # gmm-10: gmm
        chunks = trained.sample_in_chunks(n_samples, seed=seed, sampler=name)
        first = next(chunks)
        save_image_grid(trained.run_dir / f"samples-{name}.png", first[:64])
        metrics["samplers"][name] = quality_scores(
            net, itertools.chain([first], chunks), real_features, labelled, real_hf
        )
        scores = metrics["samplers"][name]
        coverage = (
            f"  label entropy {scores['label_entropy']:.3f}  confident "
            f"{scores['confident_share']:.3f}"
            if labelled
            else ""
        )
        log.info(
            f"{trained.name} / {name}: FD-aegen {scores['fd_aegen']:.2f}  precision "
            f"{scores['precision']:.3f}  recall {scores['recall']:.3f}{coverage}  "
            f"{_hf_line(scores)}"
        )
    write_json(trained.run_dir / SCORES, metrics)
    return metrics
