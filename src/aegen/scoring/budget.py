"""How much `aegen evaluate` measures when not told: sized from the data and from the training it
scores, so that evaluating costs no more than training did, and stated in the scores.

- Samples per sampler: as many as the reference has images, at least 1,000 (precision, recall
  and the KID's blocks need them) and at most 10,000, and never more than the training split
  has, so that the real-data and floor rows are scored on as many images as every sampler.
- NLL: on at most 2,000 reference images, with the most posterior draws per image (1000, 500,
  200 or 100) whose decoded draws in all (for each likelihood scored: grey images get two)
  stay within the images the training saw (its epochs times its training split); where even
  100 do not fit, on fewer images (at least 100). The training ran the encoder and decoder
  forward and backward on each image seen, so the NLL costs about a third of it or less.
  The rule depends only on the run, never on the machine's speed, so the same run gives the
  same numbers everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aegen.settings.evaluate import LEAST_SAMPLES, MOST_SAMPLES, NLL_DRAWS

log = logging.getLogger("aegen")

NLL_MOST_IMAGES = 2_000
NLL_LEAST_IMAGES = 100


def sample_count(reference_images: int, train_images: int) -> int:
    """Samples each sampler draws by default (and real and reconstructed images scored)."""
    return max(2, min(MOST_SAMPLES, train_images, max(LEAST_SAMPLES, reference_images)))


@dataclass(frozen=True)
class NllPlan:
    """How the NLL is estimated: k posterior draws on each of the first `images` images."""

    k: int
    images: int
    rule: str


def nll_plan(
    reference_images: int,
    images_seen: int,
    k: int | None = None,
    images: int | None = None,
    kinds: int = 1,
) -> NllPlan:
    """The NLL's draws and images (for `kinds` likelihoods): the given ones, else the rule."""
    scored = min(reference_images, images or NLL_MOST_IMAGES)
    if k is not None:
        return NllPlan(k, scored, "k as given (--nll-k)")
    budget = images_seen // kinds
    for draws in NLL_DRAWS:
        if draws * scored <= budget:
            return NllPlan(draws, scored, _rule(images_seen))
    fitting = max(NLL_LEAST_IMAGES, budget // NLL_DRAWS[-1])
    return NllPlan(NLL_DRAWS[-1], min(scored, fitting), _rule(images_seen))


def _rule(images_seen: int) -> str:
    return (
        f"the most draws per image (of {', '.join(map(str, NLL_DRAWS))}) whose decoded draws in "
        f"all stay within the {images_seen:,d} images the training saw"
    )


@contextmanager
def phase(what: str) -> Iterator[None]:
    """Log when a phase of the evaluation ends and how long it took."""
    started = time.perf_counter()
    yield
    log.info(f"{what}: {time.perf_counter() - started:.1f} s")


def estimate_line(what: str, seconds_per_item: float, items: int, unit: str) -> str:
    """'what: about S s for N units', from a timed probe."""
    return f"{what}: about {seconds_per_item * items:.0f} s for {items:,d} {unit}"
