"""The VAE with the VampPrior: the mixture density, a known loss value, that the prior's sampler
draws from the mixture, that the NLL is taken against it, training, and save/load/sample."""

from __future__ import annotations

import math

import pytest
import torch

from aegen.data.datasets import load_dataset
from aegen.errors import ConfigError
from aegen.latent.likelihood import log_weights
from aegen.latent.samplers import LearnedPriorSampler
from aegen.models import build_model
from aegen.models.vamp import diagonal_mixture_log_density
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer


def test_the_mixture_density_is_the_mixture_of_its_gaussians():
    generator = torch.Generator().manual_seed(0)
    means, logvars = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    z = torch.randn(2, 4, 3, generator=generator)
    components = torch.distributions.Independent(
        torch.distributions.Normal(means, torch.exp(0.5 * logvars)), 1
    )
    expected = torch.logsumexp(components.log_prob(z.unsqueeze(-2)), -1) - math.log(5)
    torch.testing.assert_close(
        diagonal_mixture_log_density(z, means, logvars), expected, rtol=1e-5, atol=1e-5
    )


def test_loss_on_a_known_input():
    """Zero weights: every posterior, the pseudo-inputs' too, is N(0, I), so the prior is N(0, I)
    and the KL estimate log q(z|x) - log p(z) is exactly 0; the decoder gives 0.5 everywhere."""
    model = build_model("vamp", {"pseudo_inputs": 3})
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    out = model.loss(torch.rand(4, 1, 28, 28))
    assert out.terms["kl"].item() == pytest.approx(0.0, abs=1e-4)
    assert out.loss.item() == pytest.approx(784 * math.log(2), rel=1e-5)
    z = torch.randn(6, 20)
    torch.testing.assert_close(model.log_prior(z), build_model("vae").log_prior(z))


def test_the_kl_estimate_is_log_q_minus_log_p():
    """One pseudo-input of zeros and images of ones: the encoder (only its first hidden unit,
    the mean pixel, feeding every code number) puts q(z|x) at N(1, I) and the prior at N(0, I),
    so the KL is 20 / 2 = 10; the one-draw estimate averages to it (with either sign wrong, to
    -10 or worse)."""
    model = build_model("vamp", {"pseudo_inputs": 1})
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.fc1.weight[0].fill_(1 / 784)
        model.fc_mu.weight[:, 0] = 1.0
    torch.manual_seed(0)
    out = model.loss(torch.ones(4000, 1, 28, 28))
    assert out.terms["kl"].item() == pytest.approx(10.0, abs=0.3)


def test_the_prior_density_survives_sharp_posteriors_and_bf16():
    """The expanded squares nearly cancel for sharp components: computed in float64 even when
    the step runs under bf16 autocast (they were off by hundreds of nats)."""
    generator = torch.Generator().manual_seed(0)
    means, logvars = torch.randn(64, 20, generator=generator) * 2, torch.full((64, 20), -10.0)
    z = means[:8] + torch.randn(8, 20, generator=generator) * math.exp(-5)
    components = torch.distributions.Independent(
        torch.distributions.Normal(means.double(), torch.exp(0.5 * logvars.double())), 1
    )
    expected = torch.logsumexp(components.log_prob(z.double().unsqueeze(1)), -1) - math.log(64)
    with torch.autocast("cpu", torch.bfloat16):
        found = diagonal_mixture_log_density(z, means, logvars)
    assert found.dtype == torch.float32
    torch.testing.assert_close(found.double(), expected, rtol=0, atol=1e-3)


def test_the_pseudo_inputs_learn():
    model = build_model("vamp", {"pseudo_inputs": 10})
    model.loss(torch.rand(4, 1, 28, 28)).loss.backward()
    assert model.pseudo_inputs.grad is not None and model.pseudo_inputs.grad.abs().sum() > 0


def test_only_the_elbo_is_offered():
    with pytest.raises(ConfigError, match="leave importance_samples at 1"):
        build_model("vamp", {"importance_samples": 5})


def test_the_prior_draws_from_each_component_of_the_mixture():
    """Two components far apart, sharp (std 0.1): half the draws near each, with its spread."""
    model = build_model("vamp", {"pseudo_inputs": 2, "latent_dim": 2})
    means = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
    model.prior_components = lambda: (means, torch.full((2, 2), math.log(0.01)))
    draws = model.draw_prior(2000, torch.Generator().manual_seed(0))
    left = draws[:, 0] < 0
    assert 0.45 < left.float().mean() < 0.55
    assert (draws[left] - means[0]).abs().max() < 0.5 and (
        draws[~left] - means[1]
    ).abs().max() < 0.5
    assert draws[left].std(0).tolist() == pytest.approx([0.1, 0.1], rel=0.1)  # std, not variance
    again = model.draw_prior(2000, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_the_nll_weights_use_the_vamp_prior():
    torch.manual_seed(0)
    model = build_model("vamp", {"pseudo_inputs": 7}).eval()
    plain = build_model("vae").eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    x = torch.rand(3, 1, 28, 28)
    ours = log_weights(model, x, 5, torch.Generator().manual_seed(1))
    theirs = log_weights(plain, x, 5, torch.Generator().manual_seed(1))
    # the same draws and likelihoods: only log p(z) differs, by the two priors' difference
    mu, logvar = model.posterior(x)
    eps = torch.randn(3, 5, 20, generator=torch.Generator().manual_seed(1))
    z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
    with torch.no_grad():
        difference = model.log_prior(z) - plain.log_prior(z)
    torch.testing.assert_close(ours - theirs, difference, rtol=1e-4, atol=1e-3)


def test_training_lowers_the_held_out_loss():
    data = load_dataset("mnist-5k", "train")
    torch.manual_seed(0)
    model = build_model("vamp", {"pseudo_inputs": 50})
    trainer = Trainer(
        model, TrainSettings(epochs=2, threads=1), data.images[:1024], data.images[4500:4756]
    )
    before = trainer.validation_loss(data.images[4500:4756])["loss"]
    after = trainer.fit(progress=False)[-1]["val_loss"]
    assert after < 0.7 * before, (before, after)


def test_a_saved_run_samples_its_own_prior_the_same(tmp_path):
    options = {"pseudo_inputs": 20}
    trained = train("vamp", "mnist-5k", epochs=1, out=tmp_path / "v", model_options=options)
    assert trained.default_sampler == "prior"
    assert isinstance(trained.sampler("prior"), LearnedPriorSampler)
    first = trained.sample(10, seed=3)
    again = load(tmp_path / "v")
    assert torch.equal(again.sample(10, seed=3), first)
    assert not (tmp_path / "v" / "sampler-prior.safetensors").exists()
