"""`aegen experiment lossy-compression`, shrunk to seconds: every method's rows, the AUROCs, the
table and the picture (needs both test splits, so the real data)."""

from __future__ import annotations

import json

import pytest

from aegen.cli import main
from aegen.experiments import lossy_compression as experiment


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setattr(experiment, "CODE_SIZES", (2, 8))
    monkeypatch.setattr(experiment, "JPEG_QUALITIES", (10, 90))
    monkeypatch.setattr(experiment, "TEST_IMAGES", 120)
    monkeypatch.setattr(experiment, "NLL_K", 4)
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))


def test_the_experiment_writes_rows_aurocs_table_and_picture(tiny, shared_data, tmp_path, capsys):
    out = tmp_path / "exp"
    status = main(
        [
            "experiment",
            "lossy-compression",
            "--dataset",
            "mnist-5k",
            "--data-root",
            str(shared_data),
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert status == 0, capsys.readouterr().err
    result = json.loads((out / "lossy-compression.json").read_text())
    rows = result["rows"]
    keys = {"method", "code_size", "bits_per_image", "train_data", "test_data", "mse", "psnr"}
    assert all(keys | {"ssim", "storage"} <= set(row) for row in rows)
    methods = {row["method"] for row in rows}
    assert {"ae-2", "ae-8", "conv-ae", "vae", "pca-2", "pca-8", "jpeg q10", "jpeg q90"} <= methods
    assert {row["test_data"] for row in rows} == {"mnist-5k", "fashion-mnist"}
    ae8 = {(r["storage"], r["test_data"]): r for r in rows if r["method"] == "ae-8"}
    assert [ae8[(s, "mnist-5k")]["bits_per_image"] for s in ("float32", "float16", "uint8")] == [
        256,
        128,
        64,
    ]
    jpeg = {r["method"]: r for r in rows if r["test_data"] == "mnist-5k" and r["storage"] == "jpeg"}
    assert jpeg["jpeg q90"]["bits_per_image"] > jpeg["jpeg q10"]["bits_per_image"]
    assert jpeg["jpeg q90"]["psnr"] > jpeg["jpeg q10"]["psnr"]
    # data-specific: the digit model rebuilds clothes worse than digits
    assert ae8[("float32", "fashion-mnist")]["mse"] > ae8[("float32", "mnist-5k")]["mse"]
    pca = {r["storage"]: r["bits_per_image"] for r in rows if r["method"] == "pca-8"}
    assert pca == {"float32": 256, "float16": 128, "uint8": 64}
    assert all(r["train_data"] is None for r in rows if r["storage"] == "jpeg")
    detection = {(r["model"], r["score"]): r for r in result["detection"]}
    assert {
        ("vae", "nll (gray)"),
        ("vae", "-elbo (gray)"),
        ("vae", "nll (binarised)"),
        ("conv-ae", "recon_mse"),
    } <= set(detection)
    assert detection[("ae-8", "recon_mse")]["auroc"] > 0.5  # clothes rebuild worse than digits
    assert all(0 <= r["auroc"] <= 1 for r in result["detection"])
    assert "| method |" in (out / "lossy-compression.md").read_text()
    assert (out / "lossy-compression.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_data_set_is_one_line(capsys, tmp_path):
    status = main(["experiment", "lossy-compression", "--dataset", "cifar", "--out", str(tmp_path)])
    assert status == 2 and "unknown dataset 'cifar'" in capsys.readouterr().err


def test_auroc_is_one_for_separated_scores_and_zero_the_wrong_way_round():
    import torch

    own, foreign = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.6])
    assert experiment.auroc(own, foreign) == 1.0
    assert experiment.auroc(-own, -foreign) == 0.0
    assert experiment.auroc(torch.ones(4), torch.ones(4)) == 0.5
