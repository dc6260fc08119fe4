"""`aegen experiment lossy-compression`: the article's first claims, measured.

An autoencoder is a compressor learned from data: lossy (rate-distortion rows against PCA with
as many components and against JPEG at its real file size, all on the same test images) and
specific to its data (each model also rebuilds the other data set's test images). The second
claim becomes a tool: how well reconstruction error, and a VAE's ELBO and NLL, tell the other
data set's images from the model's own (AUROC; below 0.5, the foreign images look *more*
familiar to the score, as Nalisnick et al. (2019) found for likelihoods of image models).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from aegen.data.datasets import ImageSet, load_dataset
from aegen.data.pixels import unit_images
from aegen.errors import ConfigError
from aegen.experiments import data_root_setting
from aegen.experiments.hardware import hardware
from aegen.files.atomic import write_atomic, write_json
from aegen.latent.likelihood import binarise, per_image_elbo_and_nll
from aegen.models.vae import BernoulliVAE
from aegen.runs.config import CONFIG
from aegen.scoring.compression import (
    SSIM_SOURCE,
    STORAGES,
    PCACodec,
    UniformQuantiser,
    code_bits,
    distortion,
    jpeg_round_trip,
    stored,
)
from aegen.scoring.per_image import per_image_scores
from aegen.trained import TrainedModel
from aegen.training.run import train
from aegen.views.figures import figure_png

log = logging.getLogger("aegen")

PARTNER = {"mnist-5k": "fashion-mnist", "mnist": "fashion-mnist", "fashion-mnist": "mnist-5k"}
EPOCHS = {"mnist-5k": 30, "mnist": 5, "fashion-mnist": 5}  # minutes on a 2-core CPU in all
CODE_SIZES = (2, 3, 8, 16, 32)
JPEG_QUALITIES = (5, 10, 20, 40, 70, 95)
TEST_IMAGES = 2000  # of each test split: the same images for every method
NLL_K = 100


def lossy_compression(
    dataset: str,
    out_dir: Path,
    data_root: str | Path | None = None,
    epochs: int | None = None,
    progress: bool | None = None,
    nll_k: int | None = None,
) -> dict[str, Any]:
    """Train the autoencoders on dataset, measure every method on its test images and the
    partner set's, and write lossy-compression.json, .md and .png into out_dir."""
    if dataset not in PARTNER:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(PARTNER)}")
    try:  # SSIM: say so before minutes of training, not after
        import torchmetrics  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "lossy-compression measures SSIM with torchmetrics: pip install 'aegen[compression]'"
        ) from exc
    nll_k = nll_k or NLL_K
    started = time.perf_counter()
    epochs = epochs or EPOCHS[dataset]
    partner = PARTNER[dataset]
    tests = {name: _test_images(name, data_root) for name in (dataset, partner)}
    models = _train_models(dataset, out_dir, data_root, epochs, progress)
    train_images = models["vae"].split("train").images  # the same split for every model
    rows = []
    for name, trained in models.items():
        rows += _model_rows(name, trained, dataset, tests)
    for size in sorted({*CODE_SIZES, 20}):
        rows += _pca_rows(size, train_images, dataset, tests)
    for quality in JPEG_QUALITIES:
        for test_name, test in tests.items():
            rebuilt, bits = jpeg_round_trip(test.images, quality)
            scores = distortion(unit_images(test.images), rebuilt)
            rows.append(_row(f"jpeg q{quality}", None, "jpeg", bits, None, test_name, scores))
    detection = _detection_rows(models, dataset, partner, tests, nll_k)
    seconds = time.perf_counter() - started
    result = {
        "experiment": "lossy-compression",
        "dataset": dataset,
        "partner": partner,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "hardware": hardware(),
        "protocol": {
            "test_images": f"the first {TEST_IMAGES} images of each test split",
            "mse": "per pixel, images in [0, 1]",
            "psnr": "dB, mean over images of 10 log10(1 / image MSE), capped at 100",
            "ssim": SSIM_SOURCE,
            "bits": "code numbers x 32 (float32), 16 (float16) or 8 (uint8, uniform per-"
            "dimension quantiser fitted on the training codes); JPEG: 8 x the file's bytes",
            "auroc": "foreign test images positive; scores oriented so that higher means "
            "foreign (recon MSE, -ELBO, NLL); 0.5 is chance, below 0.5 the foreign images "
            f"score as more familiar; NLL importance-sampled with k = {nll_k}; 'gray': the "
            "grayscale images under the Bernoulli decoder (summed BCE, as the VAE trains; not "
            "a normalised density), 'binarised': images binarised by sampling (seed 0), a "
            "proper likelihood",
        },
        "rows": rows,
        "detection": detection,
    }
    picture, table = rate_distortion_png(rows, dataset), markdown(result)  # before any file
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "lossy-compression.json", result)
    write_atomic(out_dir / "lossy-compression.md", table.encode())
    write_atomic(out_dir / "lossy-compression.png", picture)
    log.info(markdown(result))
    log.info(f"{dataset}: {seconds / 60:.1f} min on {result['hardware']}; written to {out_dir}")
    return result


def _test_images(name: str, data_root: str | Path | None) -> ImageSet:
    data = load_dataset(name, "test", data_root)
    return ImageSet(
        name, "test", data.images[:TEST_IMAGES], data.labels[:TEST_IMAGES], data.classes
    )


def _train_models(
    dataset: str, out_dir: Path, data_root: str | Path | None, epochs: int, progress: bool | None
) -> dict[str, TrainedModel]:
    """ae at each code size (the article's layers, the last hidden one widened to the code
    where the code is wider than 12), conv-ae and vae; runs kept in out_dir/runs, resumed."""
    plan: dict[str, tuple[str, dict[str, Any]]] = {
        f"ae-{size}": (
            "ae",
            {"latent_dim": size, "hidden_dims": [128, 64, max(12, size)]},
        )
        for size in CODE_SIZES
    }
    plan["conv-ae"] = ("conv-ae", {})
    plan["vae"] = ("vae", {})
    models = {}
    for name, (model, options) in tqdm(
        plan.items(), desc="lossy-compression: training", unit="model", disable=progress is False
    ):
        run_dir = out_dir / "runs" / name
        models[name] = train(
            model,
            dataset,
            epochs=epochs,
            out=run_dir,
            resume=(run_dir / CONFIG).is_file(),
            progress=False,
            model_options=options,
            **data_root_setting(data_root),
        )
    return models


def _model_rows(
    name: str, trained: TrainedModel, dataset: str, tests: dict[str, ImageSet]
) -> list[dict[str, Any]]:
    """One row per storage format and test set: codes (the posterior mean for the VAE) stored,
    read back and decoded."""
    quantiser = UniformQuantiser().fit(trained.train_codes)
    rows = []
    for test_name, test in tests.items():
        codes = trained.encode(test.images, test.labels)
        for storage in STORAGES:
            rebuilt = trained.decode(stored(codes, storage, quantiser))
            scores = distortion(unit_images(test.images), rebuilt)
            bits = code_bits(trained.latent_dim, storage)
            rows.append(_row(name, trained.latent_dim, storage, bits, dataset, test_name, scores))
    return rows


def _pca_rows(
    size: int, train_images: torch.Tensor, dataset: str, tests: dict[str, ImageSet]
) -> list[dict[str, Any]]:
    """PCA's coefficients stored like an autoencoder's codes (the same three formats, the
    quantiser fitted on the training images' coefficients)."""
    codec = PCACodec(train_images, size)
    quantiser = UniformQuantiser().fit(codec.encode(train_images))
    rows = []
    for test_name, test in tests.items():
        codes = codec.encode(test.images)
        for storage in STORAGES:
            rebuilt = codec.decode(stored(codes, storage, quantiser))
            scores = distortion(unit_images(test.images), rebuilt)
            bits = code_bits(size, storage)
            rows.append(_row(f"pca-{size}", size, storage, bits, dataset, test_name, scores))
    return rows


def _row(
    method: str,
    code_size: int | None,
    storage: str,
    bits: float,
    train_data: str | None,
    test_data: str,
    scores: dict[str, float],
) -> dict[str, Any]:
    return {
        "method": method,
        "code_size": code_size,
        "storage": storage,
        "bits_per_image": round(float(bits), 1),
        "train_data": train_data,
        "test_data": test_data,
        **{k: round(v, 6) for k, v in scores.items()},
    }


def auroc(own: torch.Tensor, foreign: torch.Tensor) -> float:
    """How well a score (higher: more foreign) ranks foreign images above the model's own:
    1 perfectly, 0.5 chance, 0 perfectly the wrong way round."""
    from sklearn.metrics import roc_auc_score

    values = torch.cat([own, foreign]).double()
    truth = torch.cat([torch.zeros(len(own)), torch.ones(len(foreign))])
    return float(roc_auc_score(truth.numpy(), values.numpy()))


def _detection_rows(
    models: dict[str, TrainedModel],
    dataset: str,
    partner: str,
    tests: dict[str, ImageSet],
    nll_k: int,
) -> list[dict[str, Any]]:
    """AUROC of each per-image score at telling the partner's test images from the model's."""
    rows = []
    chosen = ("ae-3", f"ae-{max(CODE_SIZES)}", "conv-ae", "vae")  # the article's, the widest
    for name in [name for name in dict.fromkeys(chosen) if name in models]:
        own = per_image_scores(models[name], tests[dataset], nll_k=nll_k)
        foreign = per_image_scores(models[name], tests[partner], nll_k=nll_k)
        model = models[name].model
        if isinstance(model, BernoulliVAE):  # the same, on images binarised by sampling
            for scores, test in ((own, tests[dataset]), (foreign, tests[partner])):
                elbo, nll = per_image_elbo_and_nll(model, binarise(unit_images(test.images)), nll_k)
                scores["elbo (binarised)"], scores["nll (binarised)"] = elbo, nll
            for scores in (own, foreign):
                scores["elbo (gray)"], scores["nll (gray)"] = scores.pop("elbo"), scores.pop("nll")
        for score in own:
            sign = -1.0 if score.startswith("elbo") else 1.0  # a high ELBO means familiar
            rows.append(
                {
                    "model": name,
                    "score": score if sign > 0 else f"-{score}",
                    "in_data": dataset,
                    "foreign_data": partner,
                    "auroc": round(auroc(sign * own[score], sign * foreign[score]), 4),
                    "mean_in": round(sign * float(own[score].mean()), 4),
                    "mean_foreign": round(sign * float(foreign[score].mean()), 4),
                }
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The rows and the AUROCs as markdown tables."""
    lines = [
        f"Trained on {result['dataset']} ({result['epochs']} epochs); "
        f"{result['protocol']['test_images']}.",
        "",
        "| method | code | storage | bits/image | test data | MSE ↓ | PSNR dB ↑ | SSIM ↑ |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        code = "" if row["code_size"] is None else str(row["code_size"])
        lines.append(
            f"| {row['method']} | {code} | {row['storage']} | {row['bits_per_image']:,.0f} | "
            f"{row['test_data']} | {row['mse']:.4f} | {row['psnr']:.2f} | {row['ssim']:.3f} |"
        )
    lines += [
        "",
        "| model | score | in-domain | foreign | AUROC | mean in | mean foreign |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in result["detection"]:
        lines.append(
            f"| {row['model']} | {row['score']} | {row['in_data']} | {row['foreign_data']} | "
            f"{row['auroc']:.3f} | {row['mean_in']:.4g} | {row['mean_foreign']:.4g} |"
        )
    return "\n".join(lines) + "\n"


FAMILY_COLOURS = {"ae": "C0", "conv": "C1", "vae": "C2", "pca": "C3", "jpeg": "C4"}
STORAGE_LINES = {"float32": "-", "float16": "--", "uint8": ":", "jpeg": "-"}


def rate_distortion_png(rows: list[dict[str, Any]], dataset: str) -> bytes:
    """PSNR against bits per image (log scale): in-domain on the left, the partner set's
    images on the right; a colour per method, a line style per storage format."""
    fig = Figure(figsize=(11, 4.4))
    tests = sorted({r["test_data"] for r in rows}, key=lambda name: name != dataset)
    for index, test_name in enumerate(tests):
        ax = fig.add_subplot(1, len(tests), index + 1)
        families: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            if row["test_data"] == test_name:
                family = row["method"].split("-")[0].split(" ")[0]
                families.setdefault((family, row["storage"]), []).append(row)
        for (family, storage), members in sorted(families.items()):
            members.sort(key=lambda r: r["bits_per_image"])
            ax.plot(
                [r["bits_per_image"] for r in members],
                [r["psnr"] for r in members],
                STORAGE_LINES.get(storage, "-"),
                color=FAMILY_COLOURS.get(family, "k"),
                marker="o",
                markersize=3,
                label=family if storage == "jpeg" else f"{family} ({storage})",
            )
        ax.set_xscale("log", base=2)
        ax.set(xlabel="bits per image", ylabel="PSNR (dB)")
        ax.set_title(f"trained on {dataset}, rebuilding {test_name}", fontsize=10)
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    return figure_png(fig)


__all__ = ["auroc", "lossy_compression", "markdown", "rate_distortion_png"]
