"""The training controls as pure functions of the step and the history: the learning-rate
schedule, the KL warm-up and early stopping.

Why functions of the global step and the history rather than stateful scheduler objects: a
run resumed from a checkpoint recomputes them exactly from what the checkpoint already holds
(the finished epochs and their metrics), so `--resume` stays bit-exact with no extra state
to save, check or lose.
"""

from __future__ import annotations

import math

ONECYCLE_RISE = 0.3  # share of the steps over which onecycle climbs to the full rate
ONECYCLE_START = 25.0  # onecycle starts at rate / ONECYCLE_START ...
ONECYCLE_END = 25.0 * 1e4  # ... and ends at rate / ONECYCLE_END (Smith's 1cycle defaults)


def rate_factor(schedule: str, step: int, total: int) -> float:
    """The learning rate at 0-based step `step` of `total`, as a multiple of the set rate.

    constant: 1. cosine: half a cosine from 1 at the first step down to 0 at the last.
    onecycle: a cosine rise from 1/25 to 1 over the first 30 % of the steps, then a cosine fall
    to 1/250000 at the last step."""
    if schedule == "constant":
        return 1.0
    progress = min(step, total - 1) / max(total - 1, 1)
    if schedule == "cosine":
        return _cosine(1.0, 0.0, progress)
    if schedule == "onecycle":
        start, end = 1.0 / ONECYCLE_START, 1.0 / ONECYCLE_END
        if progress < ONECYCLE_RISE:
            return _cosine(start, 1.0, progress / ONECYCLE_RISE)
        return _cosine(1.0, end, (progress - ONECYCLE_RISE) / (1.0 - ONECYCLE_RISE))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def _cosine(begin: float, end: float, progress: float) -> float:
    """From begin (progress 0) to end (progress 1) along half a cosine."""
    return end + (begin - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def kl_factor(step: int, warmup_steps: int) -> float:
    """The share of its weight the KL term has at 0-based step `step`: 0 at the first step,
    rising linearly to 1 at step `warmup_steps` (no warm-up: always 1)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def best_epoch(history: list[dict], measure: str = "loss") -> int:
    """The epoch (1-based) with the lowest validation `measure` (the model's
    selection_metric), the first of equals; 0 if none."""
    if not history:
        return 0
    return min(history, key=lambda m: (m[f"val_{measure}"], m["epoch"]))["epoch"]


def epochs_without_gain(history: list[dict], measure: str = "loss") -> int:
    """How many epochs have passed since the lowest validation `measure` in `history` (a
    run's finished epochs, or the last stretch of them)."""
    return history[-1]["epoch"] - best_epoch(history, measure) if history else 0
