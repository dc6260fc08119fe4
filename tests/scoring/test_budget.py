"""What `aegen evaluate` measures when not told: sample counts from the reference, NLL draws
within the training's images seen, a judge that stops when its held-out accuracy does."""

import torch

from aegen.scoring import classifier
from aegen.scoring.budget import nll_plan, sample_count


def test_sample_count_follows_the_reference_within_bounds_and_the_training_split():
    assert sample_count(reference_images=10_000, train_images=4_500) == 4_500
    assert sample_count(reference_images=200, train_images=1_800) == 1_000
    assert sample_count(reference_images=5_000, train_images=50_000) == 5_000
    assert sample_count(reference_images=60_000, train_images=60_000) == 10_000
    assert sample_count(reference_images=30, train_images=300) == 300


def test_nll_draws_stay_within_the_images_the_training_saw():
    # 2,000 digits, 10 % held out, 30 epochs: 54,000 images seen, 200 reference images
    plan = nll_plan(reference_images=200, images_seen=54_000)
    assert (plan.k, plan.images) == (200, 200) and "54,000" in plan.rule
    assert nll_plan(200, 250_000).k == 1000
    # mnist-5k for 10 epochs against its 10,000 test digits: k=100 on fewer images
    few = nll_plan(10_000, 45_000)
    assert (few.k, few.images) == (100, 450)
    assert nll_plan(200, 54_000, kinds=2).k == 100  # grey images: pixel values and binarised
    assert nll_plan(10_000, 1_000).images == 100  # never fewer than 100 images
    given = nll_plan(10_000, 45_000, k=1000, images=500)
    assert (given.k, given.images) == (1000, 500) and "given" in given.rule


def bars(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images of one bright column per class (4 classes) over noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 4
    images = (torch.rand(count, 1, 16, 16, generator=g) * 60).to(torch.uint8)
    for c in range(4):
        images[labels == c, :, :, 2 + 4 * c] = 255
    return images, labels


def test_the_judge_stops_once_its_held_out_accuracy_stops_rising():
    images, labels = bars(400, 0)
    recipe = classifier.Recipe(200_000, "affine")  # 555 epochs at most
    judge, record = classifier.train_stopping_early(images, labels, 4, recipe)
    patience = max(classifier.PATIENCE, -(-classifier.PATIENT_IMAGES // 360))  # 28 epochs
    assert (
        record["best_epoch"] + patience <= record["epochs"] <= record["best_epoch"] + 2 * patience
    )
    assert record["epochs"] < 100  # of 555 the recipe allows
    assert record["stop_images"] == 40 and record["images_seen"] == record["epochs"] * 360
    held_images, held_labels = bars(200, 1)
    assert classifier.accuracy(judge, held_images, held_labels) > 0.95
