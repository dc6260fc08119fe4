"""Sample-quality scores computed on classifier features and predictions.

- FD-aegen: the Frechet distance between Gaussians fitted to the features of generated and of
  real images (the FID formula on aegen's own classifier features, so never called FID).
- Improved precision and recall (Kynkaenniemi et al., 2019): each set's manifold is the union of
  balls reaching each point's k-th nearest neighbour in that set; precision is the share of
  generated points inside the real manifold, recall the share of real points inside the generated.
- KID (kernel distance): the squared maximum mean discrepancy between the two feature sets under
  a cubic polynomial kernel, estimated without bias, so that unlike the Frechet distance its
  expected value does not depend on how many images are scored; given with its standard error
  (by half-sampling).
- Class coverage: the entropy of the predicted-label histogram of the samples (divided by its
  maximum, log of the number of classes: 1 means all classes equally often) and the share of
  samples the classifier is confident about (top probability >= CONFIDENT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CONFIDENT = 0.9
NEIGHBOURS = 3


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for features [N, D] and [M, D]."""
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^1/2) = sum of sqrt of eigenvalues of S_a^1/2 S_b S_a^1/2 (symmetric, PSD).
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    distance = (mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)


def _kth_neighbour_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point in the same set."""
    radii = []
    for chunk in points.split(1024):
        distances = torch.cdist(chunk, points)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at 0
    return torch.cat(radii)


def _share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of queries within radius of at least one centre."""
    inside = 0
    for chunk in queries.split(1024):
        inside += int((torch.cdist(chunk, centres) <= radii).any(dim=1).sum().item())
    return inside / len(queries)


def precision_recall(
    real: torch.Tensor | Reference, fake: torch.Tensor, k: int = NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall of fake features against real features (or a Reference
    to them, whose radii are computed once), k-NN manifolds."""
    fake = fake.float()
    if isinstance(real, Reference):
        if real.k != k:
            raise ValueError(f"the reference's radii are for k={real.k}, not {k}")
        real_features, real_radii = real.features, real.radii
    else:
        real_features = real.float()
        real_radii = _kth_neighbour_radii(real_features, k)
    precision = _share_inside(fake, real_features, real_radii)
    recall = _share_inside(real_features, fake, _kth_neighbour_radii(fake, k))
    return precision, recall


def class_coverage(probabilities: torch.Tensor) -> dict[str, float | list[int]]:
    """Normalised entropy of the predicted-label histogram and the share of confident samples."""
    classes = probabilities.shape[1]
    counts = torch.bincount(probabilities.argmax(1), minlength=classes).double()
    shares = counts / counts.sum()
    entropy = max(0.0, -(shares[shares > 0] * shares[shares > 0].log()).sum().item())
    return {
        "label_entropy": entropy / math.log(classes),
        "confident_share": (probabilities.max(1).values >= CONFIDENT).double().mean().item(),
        "label_histogram": [int(c) for c in counts.tolist()],
    }


KID_HALVES = 50  # random halves of both sets behind the KID's standard error
KID_SEED = 0


def _kernel_sums(
    a: torch.Tensor, b: torch.Tensor, weights_a: torch.Tensor, weights_b: torch.Tensor
) -> torch.Tensor:
    """sum_ij w_a[i] k(a_i, b_j) w_b[j] for each column of the weights, under the cubic
    polynomial kernel k(x, y) = (x.y / d + 1)^3; computed in row chunks, so that no N x M
    kernel matrix is ever held whole."""
    total = torch.zeros(weights_a.shape[1], dtype=torch.float64)
    for rows, row_weights in zip(a.split(1024), weights_a.split(1024)):
        kernel = (rows @ b.T / a.shape[1] + 1).pow(3)
        total += ((kernel @ weights_b) * row_weights).sum(0)
    return total


def _within(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The mean kernel value over distinct pairs of each weighting's subset of x."""
    diagonal = (x.pow(2).sum(1) / x.shape[1] + 1).pow(3)
    counts = weights.sum(0)
    sums = _kernel_sums(x, x, weights, weights) - diagonal @ weights
    return sums / (counts * (counts - 1))


def _halves(n: int, seed: int) -> torch.Tensor:
    """Column 0 every image, then one column per seeded random half (1 in, 0 out)."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.zeros(n, KID_HALVES + 1, dtype=torch.float64)
    weights[:, 0] = 1
    for column in range(1, KID_HALVES + 1):
        weights[torch.randperm(n, generator=generator)[: n // 2], column] = 1
    return weights


@dataclass(frozen=True)
class Reference:
    """The real features and what every score against them needs of them alone (their k-th
    neighbour radii, the KID's real-real term and halves): an evaluation scores its reference
    against five image sets or more, and these parts cost 3 s a set on 10,000 images."""

    features: torch.Tensor
    k: int
    radii: torch.Tensor
    kid_weights: torch.Tensor
    kid_within: torch.Tensor


def _real_kid_part(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real side's halves (seeded apart from the other side's) and its within term."""
    weights = _halves(len(real), KID_SEED + 1)
    return weights, _within(real.double(), weights)


def reference(features: torch.Tensor, k: int = NEIGHBOURS) -> Reference:
    """The Reference of real features [N, D]."""
    if len(features) < 4:
        raise ValueError("the KID needs at least four images on each side")
    features = features.float()
    weights, within = _real_kid_part(features)
    return Reference(features, k, _kth_neighbour_radii(features, k), weights, within)


def kernel_distance(fake: torch.Tensor, real: torch.Tensor | Reference) -> tuple[float, float]:
    """KID (Binkowski et al., 2018) of fake against real features (or a Reference to them),
    with its standard error.

    The KID is the unbiased estimate of the squared maximum mean discrepancy under the cubic
    polynomial kernel, on all images of both sets: its expected value does not depend on how
    many images are scored, and is 0 for two samples of one distribution (so it can come out
    slightly negative). The standard error is by half-sampling: the standard deviation of the
    same estimate on KID_HALVES seeded random halves of both sets, over sqrt(2) (halves have
    about twice the variance; more where the sets are alike, which keeps the error on the
    safe side). Each side's halves come from a seed of their own, so the real side's part is
    the same against every set it is scored with."""
    b = (real.features if isinstance(real, Reference) else real).double()
    if min(len(fake), len(b)) < 4:
        raise ValueError("the KID needs at least four images on each side")
    weights_b, within_b = (
        (real.kid_weights, real.kid_within) if isinstance(real, Reference) else _real_kid_part(b)
    )
    a = fake.double()
    weights_a = _halves(len(a), KID_SEED)
    cross = _kernel_sums(a, b, weights_a, weights_b) / (weights_a.sum(0) * weights_b.sum(0))
    estimates = _within(a, weights_a) + within_b - 2 * cross
    error = estimates[1:].std().item() / math.sqrt(2)
    return estimates[0].item(), error
