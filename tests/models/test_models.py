"""The three reference models are exactly the article's, and their losses are right."""

import math

import pytest
import torch
from torch import nn

from aegen.errors import ConfigError
from aegen.models import build_model


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_ae_layers_are_784_128_64_12_3_and_mirrored():
    model = build_model("ae")
    assert linear_shapes(model.encoder) == [(784, 128), (128, 64), (64, 12), (12, 3)]
    assert linear_shapes(model.decoder) == [(3, 12), (12, 64), (64, 128), (128, 784)]
    assert [type(m) for m in model.encoder] == [nn.Linear, nn.ReLU] * 3 + [nn.Linear]
    assert [type(m) for m in model.decoder] == [nn.Linear, nn.ReLU] * 3 + [nn.Linear, nn.Tanh]


def test_conv_ae_feature_map_shapes():
    model = build_model("conv-ae")
    shapes = []
    x = torch.zeros(2, 1, 28, 28)
    for layer in [*model.encoder, *model.decoder]:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [
        (16, 10, 10),
        (16, 10, 10),
        (16, 5, 5),
        (8, 3, 3),
        (8, 3, 3),
        (8, 2, 2),
        (16, 5, 5),
        (16, 5, 5),
        (8, 15, 15),
        (8, 15, 15),
        (1, 28, 28),
        (1, 28, 28),
    ]
    assert isinstance(model.decoder[-1], nn.Tanh)
    assert model.encode(torch.zeros(5, 1, 28, 28)).shape == (5, 32)


def test_vae_layers_are_784_400_20():
    model = build_model("vae")
    assert linear_shapes(model) == [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]


@pytest.mark.parametrize("name, count", [("ae", 219_891), ("conv-ae", 5_729), ("vae", 652_824)])
def test_parameter_counts(name, count):
    assert sum(p.numel() for p in build_model(name).parameters()) == count


@pytest.mark.parametrize("name, low, high", [("ae", -1, 1), ("conv-ae", -1, 1), ("vae", 0, 1)])
def test_outputs_have_the_model_value_range_and_shape(name, low, high):
    model = build_model(name)
    assert model.value_range == (low, high)
    out = model.decode(torch.randn(7, model.latent_dim) * 50)
    assert out.shape == (7, 1, 28, 28)
    assert out.min() >= low and out.max() <= high


def zero_weights(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_vae_loss_on_known_input_is_784_ln2_with_zero_weights():
    # Zero weights: decoder outputs sigmoid(0) = 0.5 everywhere, and mu = logvar = 0 gives KL = 0.
    model = zero_weights(build_model("vae"))
    out = model.loss(torch.rand(4, 1, 28, 28))
    assert out.loss.item() == pytest.approx(784 * math.log(2), rel=1e-5)
    assert out.terms["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_vae_kl_term_matches_closed_form():
    model = zero_weights(build_model("vae"))
    with torch.no_grad():
        model.fc_mu.bias.fill_(1.0)  # mu = 1, logvar = 0 in all 20 dims: KL = 20 * 1/2
    assert model.loss(torch.rand(3, 1, 28, 28)).terms["kl"].item() == pytest.approx(10.0, rel=1e-5)


def test_kl_weight_scales_the_kl_term():
    model = zero_weights(build_model("vae", {"kl_weight": 4.0}))
    with torch.no_grad():
        model.fc_mu.bias.fill_(1.0)
    out = model.loss(torch.full((2, 1, 28, 28), 0.5))
    assert out.loss.item() == pytest.approx(784 * math.log(2) + 4 * 10.0, rel=1e-5)


@pytest.mark.parametrize("name", ["ae", "conv-ae"])
def test_plain_autoencoder_loss_is_mse_in_minus_one_one(name):
    model = zero_weights(build_model(name))  # decodes every code to tanh(0) = 0
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert model.loss(x).loss.item() == pytest.approx(x.pow(2).mean().item(), rel=1e-5)


def test_model_options_override_the_preset():
    model = build_model("vae", {"latent_dim": 2, "hidden_dim": 64})
    assert linear_shapes(model) == [(784, 64), (64, 2), (64, 2), (2, 64), (64, 784)]


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("vea", {}, "did you mean 'vae'"),
        ("vae", {"latent_dims": 2}, "unknown VAEConfig option 'latent_dims'"),
        ("vae", {"latent_dim": "two"}, "must be an integer"),
        ("vae", {"latent_dim": 0}, "must be at least 1"),
        ("ae", {"hidden_dims": [128, -4]}, "must be at least 1"),
        ("vae", {"kl_weight": -1}, "kl_weight must be >= 0"),
        ("vae", {"kl_weight": float("nan")}, "'kl_weight' must be a finite number"),
        ("wae", {"mmd_weight": float("inf")}, "'mmd_weight' must be a finite number"),
        ("conv-ae", {"image_size": 30}, r"28 px images .* or a multiple of 16"),
        ("conv-vae", {"image_size": 30}, r"divisible by 4 \(28, 32, 64"),
        ("vae-gan", {"image_size": 30}, r"divisible by 4 \(28, 32, 64"),
    ],
)
def test_bad_model_options_get_a_clear_error(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, options)


def test_conv_vae_shapes_for_28px_grayscale_and_32px_colour():
    model = build_model("conv-vae")
    assert model.variational and model.value_range == (0.0, 1.0)
    assert model.encode(torch.rand(3, 1, 28, 28)).shape == (3, 20)
    assert model.decode(torch.randn(3, 20)).shape == (3, 1, 28, 28)
    assert model.decode_logits(torch.randn(2, 5, 20)).shape == (2, 5, 784)  # k draws per image
    colour = build_model("conv-vae", {"image_size": 32, "channels": 3})
    assert colour.decode(torch.randn(2, 20)).shape == (2, 3, 32, 32)
    assert colour.loss(torch.rand(2, 3, 32, 32)).loss.item() > 0


def test_conv_vae_loss_on_known_input_is_pixels_ln2_with_zero_weights():
    model = zero_weights(build_model("conv-vae"))
    out = model.loss(torch.rand(4, 1, 28, 28))
    assert out.loss.item() == pytest.approx(784 * math.log(2), rel=1e-5)
    assert out.terms["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_beta_vae_is_the_vae_with_its_kl_weighted_by_four():
    beta, vae = build_model("beta-vae"), build_model("vae")
    assert type(beta) is type(vae) and linear_shapes(beta) == linear_shapes(vae)
    assert beta.config.kl_weight == 4.0 and beta.config.importance_samples == 1
    model = zero_weights(beta)
    with torch.no_grad():
        model.fc_mu.bias.fill_(1.0)  # KL = 20 * 1/2, weighted by 4
    out = model.loss(torch.full((2, 1, 28, 28), 0.5))
    assert out.loss.item() == pytest.approx(784 * math.log(2) + 4 * 10.0, rel=1e-5)
    assert build_model("beta-vae", {"kl_weight": 0.5}).config.kl_weight == 0.5


def test_iwae_is_the_vae_on_the_five_sample_bound():
    iwae = build_model("iwae")
    assert iwae.config.importance_samples == 5 and not iwae.has_kl_term
    plain = build_model("vae", {"importance_samples": 5})
    plain.load_state_dict(iwae.state_dict())
    x = torch.rand(3, 1, 28, 28)
    torch.manual_seed(0)
    ours = iwae.loss(x).loss
    torch.manual_seed(0)
    assert ours.item() == plain.loss(x).loss.item()
    torch.manual_seed(0)
    single = build_model("vae")
    single.load_state_dict(iwae.state_dict())
    assert ours.item() != single.loss(x).loss.item()  # not the ELBO


def test_a_preset_variant_refuses_what_its_objective_cannot_take():
    with pytest.raises(ConfigError, match="leave kl_weight at 1"):
        build_model("iwae", {"kl_weight": 4.0})
