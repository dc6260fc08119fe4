"""The judge of sample quality: a small CNN classifier per data set, trained once and cached.

Its penultimate layer (128 features) is the space in which aegen compares generated and real
images (FD-aegen, precision, recall), and its predictions give class coverage. Inception features
(FID) are not available offline and were made for photographs; a classifier trained on the data
set itself is the standard substitute for MNIST-like data, and its test accuracy is reported with
every score so that the judge itself is measured.

A user's own labelled images get the same CNN, sized to their shape, trained on the run's
training split and measured on its held-out images. Unlabelled images have nothing to train a
classifier on: their features come from the same CNN left at a fixed seeded random
initialisation ("random-cnn"), which needs no download and no labels but separates images less
sharply than a trained judge (docs/guide/own-images.md: "Which scores to trust").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from aegen.data.datasets import load_dataset
from aegen.data.pixels import unit_images
from aegen.files.cache import cache_root
from aegen.files.tensors import load_tensors, save_tensors

log = logging.getLogger("aegen")

CLASSIFIER_VERSION = 1
FEATURES = 128


@dataclass(frozen=True)
class Recipe:
    """How a data set's classifier is trained: images seen in all, and the augmentation."""

    images_seen: int
    augmentation: str  # "affine": small rotations, scalings and shifts; "flip": mirror images


# Digits are not mirror-symmetric but tolerate small affine moves (99.1 % on MNIST test from the
# 5,000 digits, 80 epochs); clothes are mirror-symmetric (91.3 % on Fashion-MNIST, 10 epochs).
RECIPES = {
    "mnist-5k": Recipe(400_000, "affine"),
    "mnist": Recipe(400_000, "affine"),
    "fashion-mnist": Recipe(600_000, "flip"),
}


class Classifier(nn.Module):
    """Two 5x5 conv layers with pooling, a 128-wide feature layer, then one logit per class."""

    def __init__(self, classes: int = 10, channels: int = 1, image_size: int = 28):
        super().__init__()
        side = image_size // 4
        self.conv1 = nn.Conv2d(channels, 16, 5, padding=2)  # -> 16 x S x S, pooled to S/2
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)  # -> 32 x S/2 x S/2, pooled to S/4
        self.fc = nn.Linear(32 * side * side, FEATURES)
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, S, S] in [0, 1] -> penultimate features [B, 128]."""
        h = F.max_pool2d(F.relu(self.conv1(x - 0.5)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(self.features(x), 0.3, self.training))


def random_affine(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own small rotation (+-10 deg), scaling (+-10 %), shift (+-2 px)."""
    n = len(x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / 14)  # 2 px in [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def accuracy(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of uint8 images [N, (C,) H, W] classified as their label."""
    classifier.eval()
    predictions = torch.cat(
        [classifier(unit_images(chunk)).argmax(1) for chunk in images.split(2048)]
    )
    return (predictions == labels).float().mean().item()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


AUGMENTATIONS = {"affine": random_affine, "flip": random_flip}


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    seed: int = 0,
    progress: bool | None = None,
    classes: int | None = None,
) -> Classifier:
    """Adam with a one-cycle schedule and the recipe's augmentation on uint8 images
    [N, H, W] or [N, C, H, W]."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shape = unit_images(images[:1]).shape
    classifier = Classifier(classes or int(labels.max()) + 1, shape[1], shape[2])
    augment = AUGMENTATIONS[recipe.augmentation]
    epochs = max(3, round(recipe.images_seen / len(images)))
    batch = 128
    steps = epochs * math.ceil(len(images) / batch)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    classifier.train()
    bar = tqdm(
        range(1, epochs + 1),
        desc="classifier",
        unit="epoch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for epoch in bar:
        for index in torch.randperm(len(images), generator=generator).split(batch):
            x = augment(unit_images(images[index]), generator)
            loss = F.cross_entropy(classifier(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if epoch % max(1, epochs // 5) == 0:
            log.info(f"  classifier epoch {epoch}/{epochs}: loss {loss.item():.3f}")
    return classifier.eval()


def load_classifier(dataset: str, data_root: str | Path | None = None) -> tuple[Classifier, dict]:
    """The cached classifier for a data set, trained on its training split when not yet cached.

    Returns it with its record: test accuracy, training images, version.
    """
    path = cache_root() / "classifiers" / f"{dataset}-v{CLASSIFIER_VERSION}.safetensors"
    cached = _read_cached(path, Classifier())
    if cached is not None:
        return cached
    train, test = (
        load_dataset(dataset, "train", data_root),
        load_dataset(dataset, "test", data_root),
    )
    log.info(
        f"training the {dataset} classifier for sample-quality scores (once; cached in {path})"
    )
    recipe = RECIPES[dataset]
    classifier = train_classifier(train.images, train.labels, recipe)
    record = {
        "dataset": dataset,
        "version": CLASSIFIER_VERSION,
        "train_images": len(train),
        "augmentation": recipe.augmentation,
        "test_accuracy": round(accuracy(classifier, test.images, test.labels), 4),
    }
    log.info(f"  classifier test accuracy on {dataset} test: {record['test_accuracy']:.2%}")
    save_tensors(path, classifier.state_dict(), {k: str(v) for k, v in record.items()})
    return classifier, record


def _read_cached(path: Path, classifier: Classifier) -> tuple[Classifier, dict] | None:
    """A judge's cached weights loaded into classifier, with its record; None when not cached."""
    if not path.is_file():
        return None
    tensors, metadata = load_tensors(path)
    classifier.load_state_dict(tensors)
    return classifier.eval(), {k: _number(v) for k, v in metadata.items()}


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


OWN_RECIPE = Recipe(200_000, "affine")  # at most: the held-out accuracy usually stops it first
OWN_VERSION = 2  # 2: stopped early on a held-out share of the training split
PATIENCE = 4  # epochs without a better held-out accuracy before the judge stops, at least,
PATIENT_IMAGES = 10_000  # and as many as see this many images (small data: noisier accuracy)
RATES = (1e-3, 1e-4)  # Adam's learning rate; the next one after each plateau
STOP_SHARE = 10  # every 10th training image (seeded) decides when to stop, never trained on


def _epoch(
    classifier: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    generator: torch.Generator,
) -> float:
    """One pass over the images in seeded random batches of 128; the last batch's loss."""
    classifier.train()
    loss = torch.zeros(())
    for index in torch.randperm(len(images), generator=generator).split(128):
        x = augment(unit_images(images[index]), generator)
        loss = F.cross_entropy(classifier(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def train_stopping_early(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    recipe: Recipe = OWN_RECIPE,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[Classifier, dict]:
    """A judge whose budget follows the data: Adam with the recipe's augmentation, one epoch at
    a time, kept at its best accuracy on a seeded tenth of the images that it never trains on.
    When `patience` epochs bring no gain (PATIENCE, more on small data so that they see
    PATIENT_IMAGES images), it goes back to its best and on at the next of RATES; after the
    last, it stops (at the latest at the recipe's images seen). Returns it with how long it
    trained."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    held = order[: max(classes, len(images) // STOP_SHARE)]
    fit = order[len(held) :]
    shape = unit_images(images[:1]).shape
    classifier = Classifier(classes, shape[1], shape[2])
    optimizer = torch.optim.Adam(classifier.parameters(), lr=RATES[0])
    most = max(3, round(recipe.images_seen / max(1, len(fit))))
    patience = max(PATIENCE, math.ceil(PATIENT_IMAGES / max(1, len(fit))))
    best, best_epoch, best_state = -1.0, 0, classifier.state_dict()
    started = time.perf_counter()
    bar = tqdm(
        total=most,
        desc="judge",
        unit="epoch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    epoch = 0
    for rate in RATES:
        for group in optimizer.param_groups:
            group["lr"] = rate
        since = epoch
        while epoch < most and epoch - max(best_epoch, since) < patience:
            epoch += 1
            loss = _epoch(
                classifier,
                images[fit],
                labels[fit],
                optimizer,
                AUGMENTATIONS[recipe.augmentation],
                generator,
            )
            score = accuracy(classifier, images[held], labels[held])
            if score > best:
                best, best_epoch = score, epoch
                best_state = {k: v.clone() for k, v in classifier.state_dict().items()}
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", held_out=f"{score:.3f}", refresh=False)
            if epoch % 5 == 0:
                elapsed = time.perf_counter() - started
                rates_left = len(RATES) - 1 - RATES.index(rate)
                plateau = patience - (epoch - max(best_epoch, since)) + rates_left * patience
                left = min(most - epoch, plateau) * elapsed / epoch
                log.info(
                    f"  judge epoch {epoch} (rate {rate:g}): loss {loss:.3f}, accuracy "
                    f"{score:.3f} on {len(held)} images it does not train on (best {best:.3f}, "
                    f"epoch {best_epoch}); {elapsed:.0f} s, about {left:.0f} s more if it "
                    "gains no further"
                )
        classifier.load_state_dict(best_state)
    bar.close()
    return classifier.eval(), {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "stop_images": len(held),
        "images_seen": epoch * len(fit),
        "seconds": round(time.perf_counter() - started, 1),
    }


def own_data_classifier(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor],
    classes: int,
    key: str,
    held_out_name: str,
    progress: bool | None = None,
) -> tuple[Classifier, dict]:
    """The judge for labelled images aegen has no judge for (a user's own, or a built-in set at
    another size or in colour): trained on the run's training split (stopped early, see
    train_stopping_early), measured on the held-out reference (held_out_name says which),
    cached under key (the data's digest and the split)."""
    path = cache_root() / "classifiers" / f"own-{key}-v{OWN_VERSION}.safetensors"
    shape = unit_images(train[0][:1]).shape
    cached = _read_cached(path, Classifier(classes, shape[1], shape[2]))
    if cached is not None:
        log.info(f"judge: aegen's classifier for {name}, cached in {path}")
        return cached
    log.info(
        f"judge: training a classifier on {name} for sample-quality scores, stopped when its "
        f"accuracy stops rising (once; cached in {path})"
    )
    classifier, trained = train_stopping_early(*train, classes, OWN_RECIPE, progress=progress)
    record = {
        "kind": "trained-cnn",
        "dataset": name,
        "version": OWN_VERSION,
        "train_images": len(train[0]),
        "augmentation": OWN_RECIPE.augmentation,
        **trained,
        "test_accuracy": round(accuracy(classifier, *held_out), 4),
        "accuracy_on": held_out_name,
    }
    log.info(
        f"judge: accuracy {record['test_accuracy']:.2%} on {held_out_name}, after "
        f"{trained['epochs']} epochs ({trained['seconds']:.0f} s)"
    )
    save_tensors(path, classifier.state_dict(), {k: str(v) for k, v in record.items()})
    return classifier, record


RANDOM_SEED = 0


def random_feature_cnn(channels: int, image_size: int) -> tuple[Classifier, dict]:
    """The feature extractor for unlabelled images: the classifier's CNN at a fixed seeded random
    initialisation (no labels, no download); its head is meaningless and never used."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        network = Classifier(1, channels, image_size)
    record = {"kind": "random-cnn", "seed": RANDOM_SEED, "version": CLASSIFIER_VERSION}
    return network.eval(), record
