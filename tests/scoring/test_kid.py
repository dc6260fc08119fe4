"""KID beside FD: unbiased at any sample count, with a standard error that means something."""

import pytest
import torch

from aegen.scoring.quality import frechet_distance, kernel_distance


def features(n: int, shift: float, seed: int) -> torch.Tensor:
    """ReLU features of a Gaussian, as the judge's penultimate layer gives them."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, 32, generator=g) + shift)


def test_two_samples_of_one_distribution_score_zero_within_their_error():
    kid, error = kernel_distance(features(2000, 0.0, 1), features(2000, 0.0, 2))
    assert error > 0 and abs(kid) < 3 * error


def test_a_shifted_distribution_scores_many_errors_above_zero():
    kid, error = kernel_distance(features(2000, 0.3, 1), features(2000, 0.0, 2))
    assert kid > 10 * error


def test_kid_does_not_grow_as_the_sample_count_shrinks_while_fd_does():
    real = features(4000, 0.0, 0)
    small = [kernel_distance(features(200, 0.2, seed), real)[0] for seed in range(1, 9)]
    large, _ = kernel_distance(features(4000, 0.2, 9), real)
    assert sum(small) / len(small) == pytest.approx(large, rel=0.25)
    fd_small = frechet_distance(features(200, 0.2, 1), real)
    fd_large = frechet_distance(features(4000, 0.2, 9), real)
    assert fd_small > 2 * fd_large  # the bias KID is there to avoid


def test_the_error_is_about_the_spread_of_independent_estimates():
    real = features(1000, 0.0, 0)
    runs = [kernel_distance(features(1000, 0.2, seed), real) for seed in range(1, 9)]
    spread = torch.tensor([kid for kid, _ in runs]).std().item()
    errors = [error for _, error in runs]
    assert 0.5 * spread < sum(errors) / len(errors) < 4 * spread  # the real set's share aside


def test_kid_matches_the_pairwise_formula_and_tiny_sets_are_refused():
    a, b = features(30, 0.1, 1), features(20, 0.0, 2)
    kernel = lambda x, y: (x.double() @ y.double().T / 32 + 1).pow(3)  # noqa: E731
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    expected = (
        (k_aa.sum() - k_aa.trace()) / (30 * 29)
        + (k_bb.sum() - k_bb.trace()) / (20 * 19)
        - 2 * k_ab.mean()
    )
    assert kernel_distance(a, b)[0] == pytest.approx(expected.item(), rel=1e-9)
    with pytest.raises(ValueError, match="at least four images"):
        kernel_distance(features(3, 0.0, 1), features(40, 0.0, 2))


def test_a_reference_scores_as_its_raw_features_do():
    """An evaluation computes the real side's parts once (Reference); the scores are those of
    the raw features, against every set."""
    from aegen.scoring.quality import precision_recall, reference

    real = features(600, 0.0, 0)
    ref = reference(real)
    for seed in (1, 2):
        fake = features(300, 0.2, seed)
        assert kernel_distance(fake, ref) == kernel_distance(fake, real)
        assert precision_recall(ref, fake) == precision_recall(real, fake)
    with pytest.raises(ValueError, match="k=3, not 5"):
        precision_recall(ref, features(300, 0.2, 1), k=5)
