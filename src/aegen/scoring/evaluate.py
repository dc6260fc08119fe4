"""`aegen.evaluate(run)`: score a run folder and write its scores.json."""

from __future__ import annotations

from pathlib import Path

import torch

from aegen.errors import ConfigError
from aegen.scoring.scores import score_run
from aegen.trained import TrainedModel, load


def evaluate(
    run: TrainedModel | str | Path,
    samplers: list[str] | None = None,
    n_samples: int | None = None,
    nll_k: int | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
    weights: str | None = None,
    threads: int | None = None,
) -> dict:
    """Score a run on its data set's test split, write RUN/scores.json (scoring/scores.py).
    n_samples and nll_k: None sizes them from the data and the training (scoring/budget.py).
    weights: "best", "last" or None (the best where the run has them; see `load`).
    threads: CPU threads for torch (None: torch's default, every usable core)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    trained = run if isinstance(run, TrainedModel) else load(run, data_root, weights)
    return score_run(trained, samplers, n_samples, nll_k, seed=seed)
