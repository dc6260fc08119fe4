"""Devices and precision: the choice is checked up front; bf16 trains; the losses the trainer
keeps on the device are reported and checked exactly as per-step host reads would be."""

import pytest
import torch

from aegen.data.datasets import load_dataset
from aegen.errors import ConfigError, TrainingError
from aegen.models import build_model
from aegen.models.base import Autoencoder, LossOutput
from aegen.settings.train import TrainSettings
from aegen.training.device import resolve_device
from aegen.training.run import train
from aegen.training.trainer import CHECK_EVERY, Trainer

QUIET = {"progress": False}


def test_auto_picks_the_gpu_only_where_torch_sees_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error_before_any_file_is_written(tmp_path):
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU here .*use --device cpu"):
        train("ae", epochs=1, out=tmp_path / "run", device="cuda", **QUIET)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_asking_for_mps_without_an_apple_gpu_is_a_clear_error_before_any_file(tmp_path):
    with pytest.raises(
        ConfigError, match=r"torch sees no Apple GPU \(MPS\) here .*use --device cpu"
    ):
        train("ae", epochs=1, out=tmp_path / "run", device="mps", **QUIET)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(name)


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="unknown precision 'fp16': use one of fp32, bf16"):
        TrainSettings(precision="fp16").check()


def test_bf16_training_lowers_the_loss_like_fp32_and_keeps_fp32_weights():
    images = load_dataset("mnist-5k").images[:1024]
    after = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        trainer = Trainer(
            build_model("vae"),
            TrainSettings(epochs=3, precision=precision),
            images[:896],
            images[896:],
            device="cpu",
        )
        before = trainer.validation_loss(images[896:])["loss"]
        trainer.fit(progress=False)
        after[precision] = trainer.validation_loss(images[896:])["loss"]
        assert after[precision] < 0.6 * before
    assert after["bf16"] == pytest.approx(after["fp32"], rel=0.05)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_a_bf16_run_records_its_precision_and_device(tmp_path):
    trained = train("ae", epochs=1, out=tmp_path / "run", precision="bf16", device="cpu", **QUIET)
    assert trained.config.settings.precision == "bf16"
    assert trained.config.device == "cpu"
    assert next(trained.model.parameters()).device.type == "cpu"


class StepCounter(Autoencoder):
    """A model whose loss is its batch's mean pixel, and NaN at training step `broken_step`."""

    value_range = (0.0, 1.0)
    latent_dim = 1
    image_shape = (1, 28, 28)

    def __init__(self, broken_step: int | None = None):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.steps, self.broken_step = 0, broken_step

    def loss(self, x, labels=None):
        if self.training:
            self.steps += 1
        loss = self.scale * x.mean()
        if self.steps == self.broken_step:
            loss = loss * float("nan")
        return LossOutput(loss, {"pixel": x.mean().detach()})


def test_epoch_losses_are_the_image_weighted_mean_of_every_step():
    images = torch.randint(0, 256, (1000, 28, 28), dtype=torch.uint8)  # last batch has 104
    trainer = Trainer(StepCounter(), TrainSettings(lr=1e-12), images, images[:10])
    metrics = trainer.train_epoch(1, False)
    assert metrics["pixel"] == pytest.approx(images.double().mean().item() / 255, rel=1e-6)
    assert metrics["loss"] == pytest.approx(metrics["pixel"], rel=1e-6)


def test_a_nan_between_two_looks_is_named_with_its_own_step():
    step = CHECK_EVERY + 7
    images = torch.randint(0, 256, (128 * (CHECK_EVERY + 20), 28, 28), dtype=torch.uint8)
    trainer = Trainer(StepCounter(broken_step=step), TrainSettings(), images, images[:10])
    with pytest.raises(TrainingError, match=f"the loss became nan at epoch 1, step {step};"):
        trainer.train_epoch(1, False)


class DenormalProbe(StepCounter):
    """Records what a denormal float times one gives while the trainer runs."""

    def loss(self, x, labels=None):
        self.seen = (torch.full((4,), 1e-40) * 1.0)[0].item()
        return super().loss(x, labels)


def test_the_trainer_computes_denormals_as_zero():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    model = DenormalProbe()
    images = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)
    Trainer(model, TrainSettings(), images, images[:10]).train_epoch(1, False)
    assert model.seen == 0.0


PROBE = """
import torch
from aegen.training.device import flushing_denormals
with flushing_denormals():  # first, as aegen.train does: torch's threads start inside
    product = torch.full((256, 512), 1e-42) @ torch.ones(512, 256)  # denormal unless flushed
print(int((product == 0).sum()), int((torch.full((1,), 1e-40) * 1.0).item() == 0))
"""


def test_flushing_reaches_every_thread_of_a_matmul_and_ends_with_the_block():
    """Each thread has its own flag and threads inherit it when they start, so aegen.train opens
    the block before any tensor work; after it, the user's thread computes IEEE floats again."""
    import subprocess
    import sys

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    flushed, still_flushing = map(int, out.stdout.split())
    assert flushed == 256 * 256 and still_flushing == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_the_model_and_data_live_on_the_device():
    images = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)
    trainer = Trainer(
        build_model("vae"),
        TrainSettings(epochs=1, precision="bf16"),
        images,
        images[:64],
        device="cuda",
    )
    assert trainer.train_images.is_cuda and next(trainer.model.parameters()).is_cuda
    assert trainer.fit(progress=False)[0]["loss"] > 0


def test_the_cli_refuses_an_unknown_device_in_one_line(tmp_path, capsys):
    from aegen.cli import main

    assert main(["train", "ae", "--device", "tpu", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("aegen: error: ") and "device 'tpu'" in error
    assert error.count("\n") == 1 and not (tmp_path / "run").exists()


def test_cuda_graphs_can_be_switched_off_and_are_never_used_on_the_cpu(tmp_path):
    from aegen.cli import main

    assert (
        main(
            [
                "train",
                "ae",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--no-cuda-graphs",
                "--quiet",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    trainer = Trainer(build_model("vae"), TrainSettings(), images, images, device="cpu")
    assert trainer.graphed_step is None
    assert not trainer.optimizers["model"].defaults["capturable"]
