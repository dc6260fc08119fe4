"""`aegen.evaluate(run)`: score a run folder and write its scores.json, holding the folder's
lock (runs/lock.py): a training or another evaluation of the run is refused meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aegen.runs.lock import RunFolderLock
from aegen.scoring.scores import score_run
from aegen.settings.evaluate import EvalSettings, eval_settings_from
from aegen.trained import TrainedModel, load


def evaluate(
    run: TrainedModel | str | Path,
    settings: EvalSettings | list[str] | None = None,
    **overrides: Any,
) -> dict:
    """Score a run on its data set's test split, write RUN/scores.json (scoring/scores.py).

    settings: an EvalSettings (settings/evaluate.py), or only the samplers' names; overrides:
    any of its fields by name, e.g. `evaluate(run, n_samples=2000, seed=1)`: samplers (None:
    the model's standard ones), n_samples and nll_k (None: sized from the data and the training,
    scoring/budget.py), seed, data_root and weights ("best", "last" or None, the best where the
    run has them; see `load`; both only for a run given by its folder), threads (CPU threads for
    torch; None: torch's default, every usable core)."""
    chosen = eval_settings_from(settings, overrides)
    if chosen.threads is not None:
        torch.set_num_threads(chosen.threads)
    trained = run if isinstance(run, TrainedModel) else load(run, chosen.data_root, chosen.weights)
    with RunFolderLock(trained.run_dir):  # scores.json and fitted samplers: one writer at a time
        return score_run(trained, chosen.samplers, chosen.n_samples, chosen.nll_k, seed=chosen.seed)
