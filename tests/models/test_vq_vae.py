"""The VQ-VAE and its PixelCNN prior: shapes, the quantiser (nearest entry, straight-through
gradient, moving-average updates, restarts), a known loss value, the prior's causality,
training in two stages (the prior after the autoencoder, resumable in either), save/load/sample,
refusing the samplers that need a continuous code space, and that
the prior's samples use many entries and read as varied digits."""

from __future__ import annotations

import math

import pytest
import torch

import aegen
from aegen.data.datasets import load_dataset
from aegen.errors import ConfigError
from aegen.files.tensors import load_tensors
from aegen.models import build_model
from aegen.models.pixelcnn import PixelCNN
from aegen.models.quantizer import EMAQuantizer
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

SMALL = {"hidden_channels": [8, 16], "prior_channels": 16, "prior_layers": 2}


def test_shapes_for_28px_grayscale_and_32px_colour():
    model = build_model("vq-vae").eval()
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 16 * 7 * 7) and model.code_indices(x).shape == (3, 7, 7)
    rebuilt = model(x)
    assert rebuilt.shape == x.shape and 0 <= rebuilt.min() and rebuilt.max() <= 1
    colour = build_model("vq-vae", {"image_size": 32, "channels": 3}).eval()
    assert colour(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 30}, "divisible by 4"),
        ({"codebook_size": 1}, "2 or more entries"),
        ({"ema_decay": 1.0}, "0 <= ema_decay < 1"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("vq-vae", options)


def test_the_quantiser_picks_the_nearest_entry_and_passes_the_gradient_straight_through():
    quantizer = EMAQuantizer(3, 2, decay=0.9, restart_below=0.0)
    quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]))
    vectors = torch.tensor([[4.0, 1.0], [0.5, 0.2], [1.0, 4.5]], requires_grad=True)
    chosen, index = quantizer(vectors)
    assert index.tolist() == [1, 0, 2]
    assert torch.equal(chosen.detach(), quantizer.codebook[index])
    (chosen * torch.arange(6.0).view(3, 2)).sum().backward()
    assert torch.equal(vectors.grad, torch.arange(6.0).view(3, 2))


def test_the_codebook_moves_to_the_moving_average_and_restarts_unused_entries():
    quantizer = EMAQuantizer(3, 2, decay=0.5, restart_below=0.6)
    quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 100.0]]))
    quantizer.counts.fill_(1.0)
    quantizer.sums.copy_(quantizer.codebook)
    vectors = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 0.0]])
    before = quantizer.codebook.clone()
    quantizer(vectors)  # no update outside a training step
    assert torch.equal(quantizer.codebook, before)
    quantizer(vectors, update=True)
    # entry 0: count 0.5 + 0.5 * 2 = 1.5, sum 0.5 * (0, 0) + 0.5 * (4, 2) = (2, 1)
    # entry 1: count 1.0, sum 0.5 * (10, 0) + 0.5 * (9, 0) = (9.5, 0)
    assert quantizer.counts[:2].tolist() == [1.5, 1.0]
    total = 1.5 + 1.0 + 0.5  # the counts the new entries are smoothed with (entry 2's before
    # its restart)
    smoothed = [(c + 1e-5) / (total + 3e-5) * total for c in (1.5, 1.0)]
    torch.testing.assert_close(
        quantizer.codebook[:2],
        torch.tensor([[2.0 / smoothed[0], 1.0 / smoothed[0]], [9.5, 0.0]]),
        rtol=1e-4,
        atol=1e-4,
    )
    # entry 2, chosen by nothing, fell to a count of 0.5 < 0.6: it restarts on a batch vector
    assert any(torch.equal(quantizer.codebook[2], v) for v in vectors)
    assert quantizer.counts[2].item() == 1.0


def test_loss_on_a_known_input():
    """Zero weights: every vector is 0, entry 0 is set to 0 (no commitment), the decoder gives
    0.5 everywhere, and the prior's logits are all 0: 49 ln 128 nats per grid."""
    model = build_model("vq-vae").eval()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.quantizer.codebook[0].zero_()
    x = torch.rand(4, 1, 28, 28)
    out = model.loss(x)
    recon = (x - 0.5).pow(2).sum().item() / 4
    assert out.terms["commitment"].item() == 0.0
    assert out.terms["prior_nll"].item() == pytest.approx(49 * math.log(128), rel=1e-5)
    assert out.loss.item() == pytest.approx(recon + 49 * math.log(128), rel=1e-5)


def test_the_prior_sees_only_the_positions_before_each_one():
    torch.manual_seed(0)
    prior = PixelCNN(10, 8, 2)
    grid = torch.randint(10, (1, 7, 7))
    changed = grid.clone()
    changed[0, 3, 3] = (grid[0, 3, 3] + 1) % 10
    difference = (prior(grid) - prior(changed)).abs().sum(1)[0].flatten()
    position = 3 * 7 + 3
    assert difference[: position + 1].max() == 0  # itself and everything before: unchanged
    assert difference[position + 1 :].max() > 0


def test_the_groups_are_the_autoencoder_and_the_prior():
    model = build_model("vq-vae", SMALL)
    groups = model.update_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert list(groups) == ["autoencoder", "prior"]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_the_prior_trains_after_the_autoencoder_in_the_last_share_of_the_epochs():
    stages = lambda model, epochs: [(s.groups, s.first, s.last) for s in model.stages(epochs)]
    model = build_model("vq-vae", SMALL)
    assert stages(model, 10) == [(("autoencoder",), 1, 7), (("prior",), 8, 10)]
    assert stages(model, 2) == [(("autoencoder",), 1, 1), (("prior",), 2, 2)]
    assert stages(model, 1) == [(("autoencoder", "prior"), 1, 1)]  # one epoch: both at once
    shared = build_model("vq-vae", {**SMALL, "prior_share": 0.9})
    assert stages(shared, 10) == [(("autoencoder",), 1, 1), (("prior",), 2, 10)]
    with pytest.raises(ConfigError, match="0 < prior_share < 1"):
        build_model("vq-vae", {"prior_share": 1.0})


def test_each_stage_moves_only_its_own_part():
    """Epoch 1 trains the autoencoder and codebook, not the prior; epoch 2 the prior alone, on
    grids that no longer change."""
    data = load_dataset("mnist-5k", "train")
    torch.manual_seed(0)
    model = build_model("vq-vae", SMALL)
    trainer = Trainer(
        model, TrainSettings(epochs=2, threads=1), data.images[:512], data.images[512:640]
    )
    snapshot = lambda: {k: v.clone() for k, v in model.state_dict().items()}
    start = snapshot()
    trainer.fit(0, lambda metrics: metrics["epoch"] == 1, progress=False)
    after_one = snapshot()
    trainer.fit(1, progress=False)
    after_two = snapshot()
    moved = lambda a, b, part: [k for k in a if k.startswith(part) and not torch.equal(a[k], b[k])]
    for part in ("encoder", "decoder", "expand", "quantizer"):
        assert moved(start, after_one, part) and not moved(after_one, after_two, part), part
    assert not moved(start, after_one, "prior") and moved(after_one, after_two, "prior")
    assert model.training_groups is None  # every group trainable again outside the trainer


def test_the_schedule_and_early_stopping_belong_to_each_stage():
    data = load_dataset("mnist-5k", "train")
    model = build_model("vq-vae", SMALL)
    settings = TrainSettings(epochs=10, lr=1e-3, lr_schedule="cosine", early_stop=1, threads=1)
    trainer = Trainer(model, settings, data.images[:256], data.images[256:300])
    steps = trainer.steps_per_epoch
    assert trainer.rate(0) == trainer.rate(7 * steps) == 1e-3  # each stage starts at the rate
    assert trainer.rate(7 * steps - 1) == trainer.rate(10 * steps - 1) == 0.0
    rising = [{"epoch": e, "val_loss": float(e)} for e in range(1, 10)]
    assert not trainer._patience_spent(rising[:6], 7)  # the autoencoder's epochs run out
    assert not trainer._patience_spent(rising[:8], 9)  # the prior's first epoch is its best
    assert trainer._patience_spent(rising[:9], 10)


def test_a_run_stopped_in_the_prior_stage_resumes_bit_exactly(tmp_path):
    quiet = {"progress": False, "val_fraction": 0.9, "threads": 1, "epochs": 4}
    options = {**SMALL, "prior_share": 0.5}  # epochs 1-2 the autoencoder, 3-4 the prior
    train("vq-vae", "mnist-5k", out=tmp_path / "whole", model_options=options, **quiet)
    stop_in_prior = [lambda run, epoch, metrics: aegen.STOP if epoch == 3 else None]
    train(
        "vq-vae",
        "mnist-5k",
        out=tmp_path / "parts",
        model_options=options,
        callbacks=stop_in_prior,
        **quiet,
    )
    train("vq-vae", "mnist-5k", out=tmp_path / "parts", resume=True, **quiet)
    whole = load_tensors(tmp_path / "whole" / "checkpoint.safetensors")[0]
    parts = load_tensors(tmp_path / "parts" / "checkpoint.safetensors")[0]
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)


def test_training_lowers_the_held_out_reconstruction_and_prior_losses():
    data = load_dataset("mnist-5k", "train")
    torch.manual_seed(0)
    model = build_model("vq-vae")
    trainer = Trainer(
        model, TrainSettings(epochs=3, threads=1), data.images[:4500], data.images[4500:4756]
    )
    before = trainer.validation_loss(data.images[4500:4756])
    history = trainer.fit(progress=False)
    assert history[-1]["val_recon"] < 0.5 * before["recon"]
    assert history[-1]["val_entries_used"] > 10  # not collapsed onto a few entries
    # The prior's loss is not comparable to its first (the grids used few entries then): its
    # nats on the held-out grids now, against an untrained prior's on the same grids.
    model.eval()
    with torch.no_grad():
        x = data.images[4500:4756].unsqueeze(1).float() / 255
        grids = model.code_indices(x)
        untrained = PixelCNN(128, 64, 4)
        assert model.prior.nll(grids) < untrained.nll(grids) - 25  # 191 vs 236 measured


def test_a_saved_run_samples_the_same_and_refuses_fitted_samplers(tmp_path):
    trained = train("vq-vae", "mnist-5k", epochs=1, out=tmp_path / "q", model_options=SMALL)
    assert trained.default_sampler == "prior"
    first = trained.sample(6, seed=2)
    again = load(tmp_path / "q")
    assert torch.equal(again.sample(6, seed=2), first)
    assert not torch.equal(again.sample(6, seed=3), first)
    with pytest.raises(ConfigError, match="codebook entries.*no gmm sampler"):
        again.sample(4, sampler="gmm")


@pytest.mark.slow
def test_the_priors_samples_use_many_entries_and_read_as_varied_digits(
    tmp_path, shared_data, classifier_cache, monkeypatch
):
    from aegen.scoring.classifier import load_classifier
    from aegen.scoring.scores import classify

    monkeypatch.setenv("AEGEN_CACHE", str(classifier_cache))
    run = train("vq-vae", epochs=10, out=tmp_path / "q", progress=False)
    codes = run.sampler("prior").sample(500, torch.Generator().manual_seed(1))
    entries = run.model.quantizer.codebook
    used = torch.cdist(codes.view(500, 16, 49).transpose(1, 2).reshape(-1, 16), entries).argmin(1)
    assert len(used.unique()) > 20  # of 128
    classifier, _ = load_classifier("mnist-5k", shared_data)
    _, probabilities = classify(classifier, run.decode(codes))
    counts = torch.bincount(probabilities.argmax(1), minlength=10).float()
    shares = counts / counts.sum()
    entropy = -(shares[shares > 0] * shares[shares > 0].log()).sum() / math.log(10)
    assert entropy > 0.8  # 1 for classes in equal shares
