"""The sample-quality scores behave as they must on cases whose answer is known."""

import math

import pytest
import torch

from aegen.scoring.quality import class_coverage, frechet_distance, precision_recall


def clusters(n, centres, spread=0.3, seed=0):
    """n points around the given centres (equal numbers per centre)."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.arange(n) % len(centres)
    return centres[pick] + spread * torch.randn(n, centres.shape[1], generator=g)


CENTRES = torch.randn(10, 16, generator=torch.Generator().manual_seed(42)) * 4


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 2, generator=g)
    b = torch.randn(200_000, 2, generator=g) * 2 + torch.tensor([3.0, 0.0])
    # |mu|^2 = 9; Tr(I + 4I - 2 * 2I) = 2 - for each of 2 dims: 1 + 4 - 4 = 1.
    assert frechet_distance(a, b) == pytest.approx(9 + 2, rel=0.02)


def test_real_against_real_is_near_zero_and_noise_is_far():
    real_a, real_b = clusters(4000, CENTRES, seed=1), clusters(4000, CENTRES, seed=2)
    noise = torch.randn(4000, 16, generator=torch.Generator().manual_seed(3)) * 4
    same = frechet_distance(real_a, real_b)
    assert same < 0.02 * frechet_distance(real_a, noise)
    assert same == pytest.approx(0.0, abs=0.5)
    precision, recall = precision_recall(real_a, real_b)
    assert precision > 0.7 and recall > 0.7  # k=3 balls in 16-d miss some of a fresh draw
    noise_precision, _ = precision_recall(real_a, noise)
    assert noise_precision < 0.2


def test_a_mode_collapsed_set_is_precise_but_has_low_recall():
    real = clusters(4000, CENTRES, seed=1)
    collapsed = clusters(4000, CENTRES[:1], seed=2)  # every sample from one of ten modes
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.7 and recall < 0.2


def test_class_coverage_of_uniform_and_collapsed_predictions():
    uniform = torch.eye(10).repeat(100, 1)  # every class equally often, fully confident
    coverage = class_coverage(uniform)
    assert coverage["label_entropy"] == pytest.approx(1.0)
    assert coverage["confident_share"] == 1.0 and coverage["label_histogram"] == [100] * 10
    collapsed = torch.zeros(500, 10)
    collapsed[:, 3] = 1.0
    assert class_coverage(collapsed)["label_entropy"] == pytest.approx(0.0)
    unsure = torch.full((50, 10), 0.1)
    assert class_coverage(unsure)["confident_share"] == 0.0


def test_two_equal_classes_have_entropy_log2_over_log10():
    two = torch.zeros(100, 10)
    two[:50, 0] = 1
    two[50:, 1] = 1
    assert class_coverage(two)["label_entropy"] == pytest.approx(math.log(2) / math.log(10))
