"""The autoencoders that generate without a posterior: RAE (ex-post mixture), WAE (MMD to the
prior), AAE (a discriminator on codes). Shapes, loss values on known inputs, the MMD estimate,
the RAE's Jacobian penalty, the AAE's two update groups, that training lowers the held-out
reconstruction error, and that a saved run loads and samples the same."""

from __future__ import annotations

import math

import pytest
import torch

from aegen.data.datasets import load_dataset
from aegen.data.pixels import to_model_range
from aegen.errors import ConfigError
from aegen.models import build_model
from aegen.models.code_ae import reconstruction_error
from aegen.models.wae import SCALES, imq_mmd
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

MODELS = ("rae", "wae", "aae")
CODE = {"rae": 16, "wae": 8, "aae": 8}


def zeroed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    return model


@pytest.mark.parametrize("name", MODELS)
def test_shapes_for_28px_grayscale_and_32px_colour(name):
    model = build_model(name).eval()
    x = torch.rand(3, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (3, CODE[name])
    rebuilt = model.decode(z)
    assert rebuilt.shape == x.shape and 0 <= rebuilt.min() and rebuilt.max() <= 1
    colour = build_model(name, {"image_size": 32, "channels": 3}).eval()
    assert colour.decode(torch.zeros(2, CODE[name])).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("name", MODELS)
def test_a_size_the_convolutions_cannot_halve_twice_is_refused(name):
    with pytest.raises(ConfigError, match=rf"{name} takes image sizes divisible by 4"):
        build_model(name, {"image_size": 30})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("rae", {"regulariser": "l1"}, "regulariser is one of l2, gp"),
        ("rae", {"code_weight": -1.0}, "must be >= 0"),
        ("wae", {"mmd_weight": -1.0}, "mmd_weight must be >= 0"),
        ("aae", {"adversarial_weight": -1.0}, "adversarial_weight must be >= 0"),
    ],
)
def test_bad_options_are_one_line(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, options)


def test_rae_loss_on_a_known_input():
    """Zero weights but a code bias of 1: every code is 1 in all 16 numbers (|z|^2/2 = 8), the
    decoder gives sigmoid(0) = 0.5 everywhere and has zero weights (L2 = 0)."""
    model = zeroed(build_model("rae"))
    with torch.no_grad():
        model.fc_code.bias.fill_(1.0)
    x = torch.rand(4, 1, 28, 28)
    out = model.loss(x)
    recon = (x - 0.5).pow(2).sum().item() / 4
    assert out.terms["code"].item() == pytest.approx(8.0)
    assert out.terms["decoder"].item() == 0.0
    assert out.loss.item() == pytest.approx(recon + 1e-4 * 8.0, rel=1e-6)


def test_rae_l2_penalty_is_half_the_decoders_squared_weights():
    model = zeroed(build_model("rae", {"decoder_weight": 0.1}))
    with torch.no_grad():
        model.fc_decode.weight.fill_(1.0)  # 16 x 3136 ones, and a bias that keeps the ReLU
        model.fc_decode.bias.fill_(-100.0)  # after it shut: the images stay 0.5
    x = torch.rand(2, 1, 28, 28)
    out = model.loss(x)
    assert out.terms["decoder"].item() == pytest.approx((16 * 3136 + 3136 * 100**2) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx(
        (x - 0.5).pow(2).sum().item() / 2 + 0.1 * out.terms["decoder"].item(), rel=1e-6
    )


def test_rae_gradient_penalty_estimates_the_decoders_jacobian_norm():
    """Hutchinson's estimate |J^T v|^2 averaged over probes -> |J|_F^2, the exact norm taken
    from the full Jacobian of one code's image."""
    torch.manual_seed(0)
    model = build_model("rae", {"regulariser": "gp", "hidden_channels": [4, 8]}).eval()
    z = torch.randn(1, 16)
    jacobian = torch.autograd.functional.jacobian(lambda c: model.decode_logits(c), z)
    exact = jacobian.pow(2).sum().item()
    with torch.no_grad():
        estimates = [model._logits_and_jacobian_norm(z)[1].item() for _ in range(400)]
    assert sum(estimates) / len(estimates) == pytest.approx(exact, rel=0.1)


def test_rae_gradient_penalty_trains():
    model = build_model("rae", {"regulariser": "gp", "hidden_channels": [4, 8]})
    out = model.loss(torch.rand(4, 1, 28, 28))
    out.loss.backward()
    assert out.terms["decoder"].item() > 0
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_imq_mmd_on_known_samples():
    """Point masses: equal ones give 0; at distance L apart the estimate is 2 * sum_s (1 - k_s),
    with k_s = C_s / (C_s + L^2) and C_s = 2 s (one dimension)."""
    zeros = torch.zeros(2, 1)
    assert imq_mmd(zeros, zeros).item() == pytest.approx(0.0, abs=1e-6)
    far = torch.full((2, 1), 3.0)
    expected = 2 * sum(1 - (2 * s) / (2 * s + 9.0) for s in SCALES)
    assert imq_mmd(zeros, far).item() == pytest.approx(expected, rel=1e-6)


def test_imq_mmd_tells_the_prior_from_a_shifted_one():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 400, 8, generator=generator)
    same = imq_mmd(a, b).item()
    shifted = imq_mmd(a + 1.0, b).item()
    assert abs(same) < 0.02 and shifted > 10 * max(abs(same), 0.01)


def test_wae_loss_on_a_known_input():
    """Zero weights: every code is 0 and every image 0.5; the MMD is that of a point mass at 0
    against prior draws, recomputed here from the same draws."""
    model = zeroed(build_model("wae"))
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(3)
    out = model.loss(x)
    torch.manual_seed(3)
    mmd = imq_mmd(torch.zeros(6, 8), torch.randn(6, 8)).item()
    assert out.terms["mmd"].item() == pytest.approx(mmd, rel=1e-5)
    assert out.loss.item() == pytest.approx((x - 0.5).pow(2).sum().item() / 6 + 200 * mmd, rel=1e-5)


def test_aae_loss_on_a_known_input():
    """Zero weights: the discriminator's logit is 0 for everything, so each of its BCE terms is
    ln 2; the autoencoder's loss is the reconstruction error plus ln 2."""
    model = zeroed(build_model("aae"))
    x = torch.rand(5, 1, 28, 28)
    out = model.loss(x)
    recon = (x - 0.5).pow(2).sum().item() / 5
    assert out.loss.item() == pytest.approx(recon + math.log(2), rel=1e-6)
    assert out.group_losses["discriminator"].item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_aae_groups_split_every_parameter_once_and_follow_their_own_losses():
    torch.manual_seed(0)
    model = build_model("aae", {"hidden_channels": [4, 8]})
    groups = model.update_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert list(groups) == ["autoencoder", "discriminator"]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    trainer = Trainer(
        model,
        TrainSettings(),
        torch.zeros(4, 28, 28, dtype=torch.uint8),
        torch.zeros(2, 28, 28, dtype=torch.uint8),
    )
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    trainer._backward_per_group(model.loss(x).group_losses)
    torch.manual_seed(1)
    out = model.loss(x)
    expected = torch.autograd.grad(out.group_losses["discriminator"], groups["discriminator"])
    for param, grad in zip(groups["discriminator"], expected):
        assert torch.allclose(param.grad, grad, atol=1e-6)
    # the encoder follows reconstruction + fooling (it is the generator), not reconstruction alone
    encoder = model.encoder_parameters()
    torch.manual_seed(1)
    expected = torch.autograd.grad(model.loss(x).group_losses["autoencoder"], encoder)
    for param, grad in zip(encoder, expected):
        assert torch.allclose(param.grad, grad, atol=1e-6)
    recon_alone = torch.autograd.grad(
        reconstruction_error(model.decode(model.encode(x)), x), encoder
    )
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(recon_alone, expected))


@pytest.mark.parametrize("name", MODELS)
def test_training_lowers_the_held_out_reconstruction_error(name):
    data = load_dataset("mnist-5k", "train")
    train_images, val_images = data.images[:1024], data.images[4500:4756]
    torch.manual_seed(0)
    model = build_model(name)
    trainer = Trainer(model, TrainSettings(epochs=3, threads=1), train_images, val_images)
    before = trainer.validation_loss(val_images)["recon"]
    history = trainer.fit(progress=False)
    after = history[-1]["val_recon"]
    assert all(math.isfinite(v) for row in history for v in row.values())
    assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("name", MODELS)
def test_a_saved_run_loads_and_samples_the_same(name, tmp_path):
    trained = train(name, "mnist-5k", epochs=1, out=tmp_path / name, progress=False)
    assert trained.default_sampler == ("gmm" if name == "rae" else "prior")
    first = trained.sample(12, seed=4)
    again = load(tmp_path / name)
    assert torch.equal(again.sample(12, seed=4), first)
    assert not torch.equal(again.sample(12, seed=5), first)
    images = load_dataset("mnist-5k", "train").images[:8]
    x = to_model_range(images.unsqueeze(1), again.model.value_range)
    with torch.no_grad():
        assert torch.equal(again.model(x), trained.model(x))


def test_only_rae_gp_is_kept_out_of_cuda_graphs():
    """Its penalty takes a gradient inside the loss; the trainer runs such a step eagerly."""
    assert not build_model("rae", {"regulariser": "gp"}).graphable
    assert all(build_model(name).graphable for name in (*MODELS, "vamp"))
