"""Run-folder files as aegen writes them, for tests that need one without the slow work."""

from __future__ import annotations

from pathlib import Path


def plausible_scores(run_dir: Path, model: str) -> dict:
    """A scores.json as `aegen evaluate` writes it (evaluating needs a classifier: slow)."""
    row = {
        "fd_aegen": 12.5,
        "precision": 0.61,
        "recall": 0.42,
        "label_entropy": 2.25,
        "confident_share": 0.81,
    }
    nll = {"k": 10, "nll": 91.5, "elbo": 96.25, "images": 64, "likelihood": "Bernoulli"}
    return {
        "run": str(run_dir),
        "model": model,
        "dataset": "mnist-5k",
        "protocol": {
            "reference": "mnist-5k test split (10000 images)",
            "samples_per_sampler": 64,
            "seed": 0,
            "features": "penultimate layer (128) of aegen's classifier",
            "precision_recall_k": 5,
            "confident_probability": 0.9,
            "real_data_images": 64,
        },
        "classifier": {"dataset": "mnist-5k", "version": 1, "test_accuracy": 0.97},
        "reconstruction": {"model_loss": 0.05, "pixel_mse": 0.03, "images": 10000},
        "likelihood": {"pixel_bce": nll, "binarised": nll},
        "real_data": row,
        "reconstructed_data": row,
        "samplers": {"prior": row, "gaussian": row},
    }
