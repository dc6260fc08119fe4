"""VAE-GAN: the networks, the paper's update rule (three groups, three optimizers), training
without NaN, saving and resuming all three optimizers."""

import pytest
import torch

from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

SMALL = {"hidden_channels": [8, 16]}  # the same networks, narrower, for quick tests


def test_shapes_for_28px_grayscale_and_32px_colour():
    model = build_model("vae-gan").eval()
    x = torch.rand(3, 1, 28, 28)
    assert model.encode(x).shape == (3, 20) and model.decode(torch.zeros(3, 20)).shape == x.shape
    features, logits = model.discriminator(x)
    assert features.shape == (3, 64 * 7 * 7) and logits.shape == (3,)
    colour = build_model("vae-gan", {"image_size": 32, "channels": 3}).eval()
    assert colour.decode(torch.zeros(2, 20)).shape == (2, 3, 32, 32)


def test_the_three_groups_split_every_parameter_once():
    model = build_model("vae-gan")
    groups = model.update_groups()
    assert list(groups) == ["encoder", "decoder", "discriminator"]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_update_rule_each_group_follows_its_own_loss():
    torch.manual_seed(0)
    model = build_model("vae-gan", SMALL)
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    out = model.loss(x)
    trainer = Trainer(
        model,
        TrainSettings(),
        torch.zeros(4, 28, 28, dtype=torch.uint8),
        torch.zeros(2, 28, 28, dtype=torch.uint8),
    )
    trainer._backward_per_group(out.group_losses)
    # The discriminator's gradient is that of the GAN loss alone: recompute it directly.
    torch.manual_seed(1)
    d_loss = model.loss(x).group_losses["discriminator"]
    expected = torch.autograd.grad(d_loss, list(model.discriminator.parameters()))
    for param, grad in zip(model.discriminator.parameters(), expected):
        assert torch.allclose(param.grad, grad, atol=1e-6)
    assert all(p.grad is not None for p in model.parameters())
    assert set(out.terms) >= {"kl", "feature_recon", "d_loss", "g_loss", "d_real", "d_fake"}


def test_channels_last_gradients_reach_the_fused_adam_in_their_parameters_layout():
    """A model may train in channels_last. The fused Adam updates the wrong
    elements when a gradient's layout differs from its parameter's, and autograd.grad (one group
    at a time) promises no layout, unlike backward(); the step must equal a plain Adam's."""
    torch.manual_seed(0)
    model = build_model("vae-gan", SMALL)
    model.channels_last = True  # as a convolutional model may ask
    trainer = Trainer(
        model,
        TrainSettings(lr=2e-4),
        torch.zeros(4, 28, 28, dtype=torch.uint8),
        torch.zeros(2, 28, 28, dtype=torch.uint8),
    )
    assert any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())
    out = model.loss(torch.rand(8, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    trainer._backward_per_group(out.group_losses)
    for name, params in trainer.groups.items():
        plain = [torch.nn.Parameter(p.detach().contiguous().clone()) for p in params]
        for copy, p in zip(plain, params):
            copy.grad = p.grad.contiguous().clone()
        torch.optim.Adam(plain, lr=2e-4, betas=model.adam_betas, foreach=False).step()
        trainer.optimizers[name].step()
        for copy, p in zip(plain, params):
            assert torch.allclose(p, copy, atol=1e-7), name


def test_training_runs_without_nan_and_moves_every_group(tmp_path):
    data = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)
    model = build_model("vae-gan", SMALL)
    before = {
        name: [p.detach().clone() for p in params] for name, params in model.update_groups().items()
    }
    Trainer(model, TrainSettings(epochs=2, batch_size=64, lr=2e-4), data, data[:64]).fit(
        progress=False
    )
    for name, params in model.update_groups().items():
        assert any(not torch.equal(p, q) for p, q in zip(params, before[name])), name


def test_resume_restores_all_three_optimizers_bit_exactly(tmp_path):
    # a fixed thread count: convolutions sum in another order with another one (README)
    kwargs = {"model_options": SMALL, "progress": False, "threads": 1}
    whole = train("vae-gan", epochs=2, out=tmp_path / "whole", **kwargs)
    train("vae-gan", epochs=1, out=tmp_path / "parts", **kwargs)
    resumed = train("vae-gan", epochs=2, out=tmp_path / "parts", resume=True, **kwargs)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    again = load(tmp_path / "parts")
    assert torch.equal(again.sample(4, seed=2), resumed.sample(4, seed=2))


def test_vae_gan_has_no_pixel_likelihood_to_report():
    model = build_model("vae-gan")
    assert model.variational and not getattr(model, "pixel_likelihood", False)


@pytest.mark.parametrize(
    "options, message",
    [({"image_size": 30}, "divisible by 4"), ({"gamma": -1.0}, "gamma and kl_weight")],
)
def test_bad_vae_gan_options(options, message):
    from aegen.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_model("vae-gan", options)


@pytest.mark.slow
def test_torchrun_trains_a_model_with_several_update_groups(tmp_path):
    import json
    import os
    import subprocess
    import sys

    # Each group's gradient comes from autograd.grad, outside DDP's hooks: the trainer
    # all-reduces them itself. (BatchNorm statistics stay per rank, so no bitwise comparison.)
    args = [
        "train",
        "vae-gan",
        "--epochs",
        "1",
        "--val-fraction",
        "0.8",
        "--quiet",
        "--option",
        "hidden_channels=[8,16]",
        "--out",
        str(tmp_path / "two"),
    ]
    ranks = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "aegen",
            *args,
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    metrics = json.loads((tmp_path / "two" / "history.jsonl").read_text())
    assert metrics["epoch"] == 1 and all(v == v for v in metrics.values())  # no NaN
