"""A run that says when training went wrong: the end-of-training checks (scoring/diagnosis.py)
find each fault in a run made to have it, and nothing in a healthy run."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from aegen.runs.folder import read_diagnosis
from aegen.scoring.diagnosis import diagnose
from aegen.training.run import load, train

QUIET = {"progress": False, "threads": 1}


def findings_of(trained, samples=None) -> list[str]:
    """The findings of a run's diagnosis, drawn again (samples: the run's, unless given)."""
    history = []
    model = trained.model
    planned = model.stages(trained.config.settings.epochs)
    samples = samples if samples is not None else trained.sample(64)
    return diagnose(trained, history, planned, 10, samples)["findings"]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A VAE trained long enough to rebuild digits better than PCA with as many numbers."""
    return train("vae", "mnist-5k", epochs=12, out=tmp_path_factory.mktemp("d") / "vae", **QUIET)


def test_a_healthy_run_has_no_finding(healthy):
    diagnosis = read_diagnosis(healthy.run_dir)
    assert diagnosis is not None and diagnosis["findings"] == []
    checks = diagnosis["checks"]
    assert checks["reconstruction_mse"] < checks["pca_mse"] < checks["mean_image_mse"]
    assert checks["active_dimensions"] > 5 and checks["dimensions"] == 20
    assert 0.5 / 4 < checks["samples_hf_ratio"] < 2  # blurred digits, no checkerboard


def test_posterior_collapse_is_named(healthy):
    collapsed = load(healthy.run_dir)
    with torch.no_grad():  # every code dimension at the prior, whatever the image
        for layer in (collapsed.model.fc_mu, collapsed.model.fc_logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    (found, *_) = findings_of(collapsed)
    assert found.startswith("posterior collapse: 0 of 20 code dimensions carry 0.01 nats")


def test_reconstructions_no_better_than_the_mean_image_are_named(healthy):
    blind = load(healthy.run_dir)
    with torch.no_grad():  # the decoder gives one grey image whatever the code
        blind.model.fc4.weight.zero_()
        blind.model.fc4.bias.zero_()
    assert any("no better than the training images' mean image" in f for f in findings_of(blind))


def test_reconstructions_no_better_than_pca_are_named(tmp_path):
    short = train("vae", "mnist-5k", epochs=2, out=tmp_path / "short", **QUIET)
    (found,) = read_diagnosis(short.run_dir)["findings"]
    assert "no better than PCA with 20 numbers per image" in found


def test_a_checkerboard_over_the_bound_is_named(healthy):
    board = (torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2
    samples = board.float().expand(64, 1, 28, 28)
    (found,) = findings_of(healthy, samples)
    assert found.startswith("a checkerboard: the samples have ")


def test_a_stage_that_ended_unsettled_is_named_at_the_end_of_the_run(tmp_path, caplog):
    small = {"hidden_channels": [8, 16], "prior_width": 16, "prior_blocks": 1, "sampling_steps": 2}
    with caplog.at_level(logging.WARNING, logger="aegen"):
        run = train("ldm", "mnist-5k", epochs=4, out=tmp_path / "ldm", model_options=small, **QUIET)
    findings = read_diagnosis(run.run_dir)["findings"]
    assert any("the autoencoder stage ended at its last epoch (2" in f for f in findings)
    assert "short of its floor of 500 steps" in caplog.text
    assert {p.name for p in run.run_dir.glob("samples*.png")} == {
        "samples.png",
        "samples-prior.png",
    }


def test_a_damaged_diagnosis_is_refused_in_one_line(healthy, tmp_path):
    path = healthy.run_dir / "diagnosis.json"
    kept = path.read_bytes()
    try:
        path.write_text(json.dumps({"findings": "all fine"}))
        with pytest.raises(Exception, match="does not hold a diagnosis"):
            read_diagnosis(healthy.run_dir)
    finally:
        path.write_bytes(kept)


def test_a_weak_priors_samples_are_shown_beside_a_fitted_mixtures(healthy):
    """samples.png is the default sampler's; samples-NAME.png names each shown sampler."""
    names = {p.name for p in healthy.run_dir.glob("samples*.png")}
    assert names == {"samples.png", "samples-prior.png", "samples-gmm.png"}
    assert (healthy.run_dir / "samples.png").read_bytes() == (
        healthy.run_dir / "samples-prior.png"
    ).read_bytes()
