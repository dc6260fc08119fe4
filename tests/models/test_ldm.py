"""The latent diffusion model: the autoencoder's shapes, a known loss value, the two stages (each
lowers its held-out loss, each resumes bit-exactly), the flow-matching prior fitting a known
distribution (and following its label under guidance), seeded sampling, and labels only where
the data has them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aegen
from aegen.data.datasets import load_dataset
from aegen.errors import ConfigError
from aegen.files.tensors import load_tensors
from aegen.models import build_model
from aegen.models.code_denoiser import CodeDenoiser
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

SMALL = {"hidden_channels": [8, 16], "prior_width": 16, "prior_blocks": 1, "sampling_steps": 4}


def test_shapes_for_28px_grayscale_and_32px_colour():
    model = build_model("ldm").eval()
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 4 * 7 * 7)
    assert model(x).shape == x.shape and 0 <= model(x).min() and model(x).max() <= 1
    codes = model.draw_prior(2, torch.Generator().manual_seed(0), torch.tensor([3, 4]))
    assert codes.shape == (2, 196) and model.decode(codes).shape == (2, 1, 28, 28)
    colour = build_model("ldm", {"image_size": 32, "channels": 3, "code_channels": 3}).eval()
    assert colour.encode(torch.rand(2, 3, 32, 32)).shape == (2, 3 * 8 * 8)
    assert colour(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_bad_options_get_one_line():
    for options, message in [
        ({"reconstruction": "lpips"}, "one of bce, l1, l2"),
        ({"prior_share": 0.0}, "0 < prior_share < 1"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"prior_classes": -1}, "at least 0"),
        ({"image_size": 30}, "divisible by 4"),
        ({"guidance_from": 0.6, "guidance_to": 0.5}, "guidance_from <= guidance_to"),
        ({"guidance_to": 1.5}, "guidance_to <= 1"),
        ({"solver": "rk4"}, "one of ab2, heun"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_model("ldm", options)


def test_a_known_loss_value_with_all_weights_zero():
    """Zero weights: code mean 0 and log-variance 0 (KL 0), logits 0 (BCE ln 2 per pixel), a
    still velocity field (the prior's loss: |u - e|^2 summed, 2 per number on average)."""
    torch.manual_seed(0)
    model = build_model("ldm")
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    out = model.eval().loss(torch.rand(256, 1, 28, 28), torch.randint(10, (256,)))
    assert out.terms["recon"].item() == pytest.approx(784 * math.log(2), rel=1e-5)
    assert out.terms["kl"].item() == 0
    assert out.terms["prior"].item() == pytest.approx(2 * 196, rel=0.05)


def test_the_autoencoder_stage_ends_where_its_share_ends_at_the_latest():
    stages = [(s.groups, s.first, s.last, s.settles) for s in build_model("ldm").stages(10)]
    assert stages == [(("autoencoder",), 1, 5, "val_mse"), (("prior",), 6, 10, None)]
    fixed = build_model("ldm", {"stage_switch": "fixed", "prior_share": 0.7}).stages(10)
    assert [(s.first, s.last, s.settles) for s in fixed] == [(1, 3, None), (4, 10, None)]


def test_each_stage_lowers_its_held_out_loss():
    data = load_dataset("mnist-5k", "train")
    torch.manual_seed(0)
    # epochs 1-2 the autoencoder, 3-4 the prior
    model = build_model("ldm", {"prior_share": 0.5, "stage_switch": "fixed"})
    settings = TrainSettings(epochs=4, threads=1)
    train_images, val_images = data.images[:4500], data.images[4500:4756]
    trainer = Trainer(
        model, settings, train_images, val_images, data.labels[:4500], data.labels[4500:4756]
    )
    start = trainer.validation_loss(val_images, 0, data.labels[4500:4756])
    weights: list[torch.Tensor] = []
    keep = lambda metrics: weights.append(model.decoder[1].weight.detach().clone())
    history = trainer.fit(on_epoch_end=keep, progress=False)
    autoencoder_done, prior_done = history[1], history[3]
    assert autoencoder_done["val_recon"] < 0.5 * start["recon"]
    assert torch.equal(weights[1], weights[3])  # the autoencoder waits in the second stage
    # The labels the prior saw (two epochs of them): what unlabelled draws pick labels from.
    assert torch.equal(model.label_counts, 2 * torch.bincount(data.labels[:4500], minlength=10))
    assert prior_done["val_prior"] < 0.8 * autoencoder_done["val_prior"]  # 0.48 measured


def two_clusters(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grids [n, 1, 2, 2] whose four numbers are all -1.5 (label 0) or all +1.5 (label 1), plus
    a little noise: a distribution with two separate modes and a known label for each."""
    labels = torch.randint(2, (n,), generator=generator)
    centre = (labels.float() * 3 - 1.5)[:, None, None, None]
    return centre + 0.1 * torch.randn(n, 1, 2, 2, generator=generator), labels


def test_the_flow_prior_fits_two_modes_and_follows_the_label():
    torch.manual_seed(0)
    prior = CodeDenoiser(channels=1, classes=2, width=32, blocks=2)
    optimizer = torch.optim.Adam(prior.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(800):
        codes, labels = two_clusters(256, generator)
        loss = prior.loss(codes, labels, label_dropout=0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    noise = torch.randn(2000, 1, 2, 2, generator=generator)
    free = prior.sample(noise, None, guidance=1.0, steps=20)
    means = free.flatten(1).mean(1)
    assert 0.35 < (means > 0).float().mean() < 0.65  # both modes, about equally
    assert (means.abs() - 1.5).abs().median() < 0.2  # at the modes, not between them
    assert free.flatten(1).std(1).median() < 0.35  # the four numbers move together
    wanted = torch.randint(2, (2000,), generator=generator)
    guided = prior.sample(noise, wanted, guidance=2.0, steps=20).flatten(1).mean(1)
    assert ((guided > 0).long() == wanted).float().mean() > 0.95


def test_a_saved_run_samples_the_same_and_by_label(tmp_path):
    trained = train("ldm", "mnist-5k", epochs=2, out=tmp_path / "l", model_options=SMALL)
    assert trained.default_sampler == "prior" and trained.label_classes == 10
    first = trained.sample(6, seed=2)
    again = load(tmp_path / "l")
    assert torch.equal(again.sample(6, seed=2), first)
    assert not torch.equal(again.sample(6, seed=3), first)
    assert not torch.equal(again.sample(6, seed=2, label=3), first)
    assert torch.equal(again.sample(6, seed=2, label=3), trained.sample(6, seed=2, label=3))
    with pytest.raises(ConfigError, match=r"class indices in 0\.\.9"):
        again.sample(4, label=10)
    with pytest.raises(ConfigError, match="gaussian sampler draws no codes for a label"):
        again.sample(4, sampler="gaussian", label=3)
    # Its encoder and decoder take no labels: reconstructions need none.
    assert again.reconstruct(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    pictures = {p.name for p in (tmp_path / "l").glob("*.png")}
    assert {"samples.png", "denoising.png", "interpolations.png"} <= pictures
    # prior-N: the same flow solved in N steps; N = the sampling_steps option is the prior
    steps = again.model.config.sampling_steps
    assert torch.equal(again.sample(6, seed=2, sampler=f"prior-{steps}"), first)
    coarse = again.sample(6, seed=2, sampler="prior-2", label=3)
    assert coarse.shape == first.shape and not torch.equal(coarse, first)
    with pytest.raises(ConfigError, match="whole number in 1..10000"):
        again.sample(2, sampler="prior-0")


def test_only_ldm_takes_prior_steps(tmp_path):
    trained = train("ae", "mnist-5k", epochs=1, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="only ldm's prior is solved in steps"):
        trained.sample(2, sampler="prior-5")


def test_unlabelled_images_train_an_unconditional_prior(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (64, 28, 28), dtype=np.uint8))
    trained = train(
        "ldm", str(tmp_path / "x.npy"), epochs=2, out=tmp_path / "u", model_options=SMALL
    )
    assert trained.model.prior_classes == 0 and trained.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(ConfigError, match="not a conditional model"):
        trained.sample(3, label=1)


@pytest.mark.parametrize("stop_after", [1, 3])  # in the autoencoder's stage, in the prior's
def test_a_run_stopped_in_either_stage_resumes_bit_exactly(tmp_path, stop_after):
    quiet = {"progress": False, "val_fraction": 0.9, "threads": 1, "epochs": 4}
    train("ldm", "mnist-5k", out=tmp_path / "whole", model_options=SMALL, **quiet)
    stop = [lambda run, epoch, metrics: aegen.STOP if epoch == stop_after else None]
    parts = tmp_path / "parts"
    train("ldm", "mnist-5k", out=parts, model_options=SMALL, callbacks=stop, **quiet)
    train("ldm", "mnist-5k", out=parts, resume=True, **quiet)
    whole = load_tensors(tmp_path / "whole" / "checkpoint.safetensors")[0]
    done = load_tensors(parts / "checkpoint.safetensors")[0]
    assert whole.keys() == done.keys() and all(torch.equal(whole[k], done[k]) for k in whole)


@pytest.mark.parametrize(("name", "first_layer"), [("ldm", "inner"), ("vq-vae", "embed")])
def test_the_waiting_prior_reports_on_an_eighth_of_a_training_batch(name, first_layer):
    """In the autoencoder's stage the prior's loss is only a report: a training step runs it on
    16 of 128 codes (ldm's full pass was 60 % of the stage's FLOPs), and so does that stage's
    validation; the prior's own stage and a model outside the trainer run it on all of them."""
    model = build_model(name)
    rows: list[int] = []
    layer = getattr(model.prior, first_layer)
    layer.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    x, labels = torch.rand(128, 1, 28, 28), torch.randint(10, (128,))
    stepped = (
        (("autoencoder",), True),
        (("autoencoder",), False),
        (("prior",), True),
        (("prior",), False),
        (None, False),
    )
    for groups, training in stepped:
        model.training_groups = groups
        model.train(training).loss(x, labels)
    assert rows == [16, 16, 128, 128, 128]


def test_guidance_acts_on_its_stretch_of_the_flow_only():
    """5 Adams-Bashforth steps evaluate the velocity once each, at t = 0, 0.2, 0.4, 0.6, 0.8:
    guided (two passes, labelled and unlabelled, in one batch of twice the rows) only inside
    [0.15, 0.7]: 8 passes a sample where 10 Heun steps guided throughout took 38."""
    model = build_model("ldm").eval()
    rows: list[int] = []
    model.prior.inner.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    model.solve_prior(5, torch.Generator().manual_seed(0), torch.arange(5))
    assert rows == [5, 10, 10, 10, 5]
    rows.clear()
    model.solve_prior(5, torch.Generator().manual_seed(0), torch.arange(5), steps=10)
    assert sum(rows) // 5 == 10 + 6  # guided at 0.2, 0.3, ..., 0.7: the window's ends hold


def test_codes_solved_in_parts_equal_codes_solved_at_once(monkeypatch):
    from aegen.models import ldm

    torch.manual_seed(0)
    model = build_model("ldm").eval()
    torch.nn.init.normal_(model.prior.out.weight, std=0.05)  # a velocity that is not still
    whole: list[torch.Tensor] = []
    at_once = model.solve_prior(10, torch.Generator().manual_seed(3), path=whole)
    monkeypatch.setattr(ldm, "SOLVE_ROWS", 4)  # parts of 4, 4 and 2 rows
    parts: list[torch.Tensor] = []
    in_parts = model.solve_prior(10, torch.Generator().manual_seed(3), path=parts)
    assert in_parts.shape == at_once.shape == (10, model.latent_dim)
    assert torch.allclose(in_parts, at_once, atol=1e-5)
    assert len(parts) == len(whole) == 5
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(parts, whole))


def test_adams_bashforth_is_exact_on_a_straight_flow_and_second_order():
    from aegen.models.flow_matching import adams_bashforth_solve

    start = torch.tensor([[1.0, -2.0]])
    straight = adams_bashforth_solve(lambda x, t: torch.ones_like(x) * 3, start, 4)
    assert torch.allclose(straight, start + 3)
    # dx/dt = x from 1: e at t = 1; halving the step quarters the error (second order)
    errors = [
        (adams_bashforth_solve(lambda x, t: x, torch.ones(1, 1), n) - math.e).abs().item()
        for n in (20, 40)
    ]
    assert 3.5 < errors[0] / errors[1] < 4.5


def test_a_run_recorded_before_the_guidance_interval_keeps_its_sampling():
    from aegen.models import build_recorded_model

    old = build_recorded_model("ldm", {"sampling_steps": 10, "guidance": 1.5})
    config = old.config
    assert (config.guidance_from, config.guidance_to, config.solver) == (0.0, 1.0, "heun")
    assert config.sampling_steps == 10
    new = build_model("ldm").config
    assert (new.guidance_from, new.guidance_to, new.solver, new.sampling_steps) == (
        0.15,
        0.7,
        "ab2",
        5,
    )


@pytest.mark.parametrize(("steps", "columns"), [(4, 4), (12, 9)])
def test_the_denoising_picture_shows_each_step_once(steps, columns):
    """Fewer steps than the picture's 9 columns: one column a step, none drawn twice."""
    from types import SimpleNamespace

    from aegen.views.run_pictures import N_DENOISED, denoising_paths

    model = build_model("ldm", {**SMALL, "sampling_steps": steps}).eval()
    torch.nn.init.normal_(model.prior.out.weight, std=0.1)  # a field that moves (it starts still)
    codes = denoising_paths(SimpleNamespace(model=model, decode=lambda codes: codes))
    per_sample = codes.view(N_DENOISED, -1, codes.shape[-1])
    assert per_sample.shape[1] == columns
    pairs = [(row[i], row[i + 1]) for row in per_sample for i in range(columns - 1)]
    assert not any(torch.equal(a, b) for a, b in pairs)


def test_scoring_reconstructions_estimates_the_prior_loss_on_an_eighth():
    """evaluate's reconstruction scores run the waiting prior on an eighth of each chunk, as
    the autoencoder's stage does (on all 10,000 test codes its passes were 4/5 of that work),
    and leave the model's groups as they were."""
    from aegen.scoring.scores import prior_waiting

    model = build_model("ldm").eval()
    rows: list[int] = []
    model.prior.inner.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    x, labels = torch.rand(64, 1, 28, 28), torch.randint(10, (64,))
    with prior_waiting(model):
        parts = model.loss(x, labels).group_losses
    assert rows == [8] and model.training_groups is None
    assert parts is not None and torch.isfinite(parts["prior"])
    vae = build_model("vae")
    with prior_waiting(vae):  # a model without a prior: nothing changes
        assert vae.training_groups is None
