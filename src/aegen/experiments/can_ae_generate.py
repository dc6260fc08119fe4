"""`aegen experiment can-ae-generate`: the founding question, answered with measured numbers.

Trains the three reference models on one data set with a CPU-sized budget, evaluates every
sampler on each (the fixed prior, the fitted Gaussian and mixture, and the learned densities:
flow, diffusion, two-stage), each beside the floor a perfect density would reach (the model's
reconstructions of training images), and writes the comparison with the hardware and the time
it took.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from aegen.errors import ConfigError
from aegen.experiments import data_root_setting
from aegen.experiments.hardware import hardware
from aegen.runs.config import CONFIG
from aegen.scoring.evaluate import evaluate
from aegen.settings.evaluate import MOST_NLL_K, MOST_SAMPLES
from aegen.training.run import train
from aegen.views.comparison import compare_runs, markdown_table

log = logging.getLogger("aegen")

MODELS = ("ae", "conv-ae", "vae")
# mnist-5k: 0.45 M images seen; Fashion-MNIST: the learned-densities issue's budget (0.27 M)
EPOCHS = {"mnist-5k": 100, "mnist": 5, "fashion-mnist": 5}
SAMPLERS = ("prior", "gaussian", "gmm", "flow", "diffusion", "two-stage")


def can_ae_generate(
    dataset: str,
    out_dir: Path,
    data_root: str | Path | None = None,
    epochs: int | None = None,
    n_samples: int = MOST_SAMPLES,
    nll_k: int = MOST_NLL_K,
    progress: bool | None = None,
) -> list[dict]:
    """Train ae, conv-ae and vae on dataset, evaluate every sampler on each, compare."""

    if dataset not in EPOCHS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(EPOCHS)}")
    started = time.perf_counter()
    epochs = epochs or EPOCHS[dataset]
    run_dirs = []
    for model in tqdm(
        MODELS,
        desc=f"can-ae-generate on {dataset}",
        unit="model",
        disable=None if progress is None else not progress,
    ):
        run_dir = out_dir / "runs" / model
        resume = (run_dir / CONFIG).is_file()
        trained = train(
            model,
            dataset,
            epochs=epochs,
            out=run_dir,
            resume=resume,
            progress=False,
            **data_root_setting(data_root),
        )
        evaluate(trained, list(SAMPLERS), n_samples=n_samples, nll_k=nll_k)
        run_dirs.append(run_dir)
    seconds = time.perf_counter() - started
    extra = {
        "experiment": "can-ae-generate",
        "dataset": dataset,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "hardware": hardware(),
    }
    rows, notes = compare_runs(run_dirs, out_dir, extra)
    log.info(markdown_table(rows, notes))
    log.info(
        f"{dataset}: {seconds / 60:.1f} min on {extra['hardware']}; tables and picture in {out_dir}"
    )
    return rows
