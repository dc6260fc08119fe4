"""The CUDA path, end to end: every model trains on the GPU, in fp32 and bf16, with and without
CUDA graphs, to the losses it reaches on the CPU; a GPU run folder opens, samples and resumes on
a machine without a GPU; the NLL estimate agrees across devices. Skipped where torch sees no GPU
(CI has none)."""

import subprocess
import sys

import pytest
import torch

import aegen
from aegen.data.datasets import load_dataset
from aegen.latent.likelihood import elbo_and_nll
from aegen.models import PRESETS, build_model
from aegen.runs.folder import read_history
from aegen.settings.train import TrainSettings
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

QUIET = {"progress": False, "val_fraction": 0.2}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_model_trains_on_the_gpu_and_its_run_opens_on_the_cpu(tmp_path, name):
    trained = train(name, epochs=1, out=tmp_path / "run", device="cuda", **QUIET)
    assert (trained.config.device or "").startswith("cuda")
    reopened = load(tmp_path / "run")
    assert all(p.device.type == "cpu" for p in reopened.model.parameters())
    samples = reopened.sample(16, seed=1)
    assert samples.shape == (16, 1, 28, 28) and torch.isfinite(samples).all()
    assert torch.equal(samples, reopened.sample(16, seed=1))


def _val_loss_after_training(
    name: str, device: str, precision: str = "fp32", cuda_graphs: bool = True, **controls
) -> float:
    data = load_dataset("mnist-5k")
    images, labels = data.images[:2048], data.labels[:2048]
    torch.manual_seed(0)
    trainer = Trainer(
        build_model(name),
        TrainSettings(epochs=3, precision=precision, cuda_graphs=cuda_graphs, **controls),
        images[:1792],
        images[1792:],
        labels[:1792],
        labels[1792:],
        device=device,
    )
    trainer.fit(progress=False)
    graphed = trainer.graphed_step is not None and trainer.graphed_step.graph is not None
    assert graphed == (device == "cuda" and cuda_graphs)
    return trainer.validation_loss(images[1792:], labels=labels[1792:])["loss"]


@pytest.mark.parametrize("name", ["ae", "conv-ae", "vae", "conv-vae"])
def test_the_gpu_reaches_the_cpus_loss(name):
    """Same seed, same batches: the GPU (TF32 convolutions included) lands where the CPU does."""
    cpu = _val_loss_after_training(name, "cpu")
    assert _val_loss_after_training(name, "cuda") == pytest.approx(cpu, rel=0.03)
    assert _val_loss_after_training(name, "cuda", "bf16") == pytest.approx(cpu, rel=0.05)


@pytest.mark.parametrize("name", ["vae", "conv-ae", "cvae"])
def test_replaying_the_recorded_step_trains_like_launching_it(name):
    """The CUDA graph is the same step: same batches, noise and Adam as the eager loop."""
    eager = _val_loss_after_training(name, "cuda", cuda_graphs=False)
    assert _val_loss_after_training(name, "cuda") == pytest.approx(eager, rel=0.01)


CONTROLS = {"lr_schedule": "onecycle", "clip_grad": 1.0, "kl_warmup": 2, "lr": 3e-3}


def test_the_rate_and_the_kl_share_move_inside_a_recorded_step():
    """A recorded step reads the rate and the KL share from tensors the trainer refills: with a
    onecycle schedule, clipping and a KL warm-up the graph trains like the eager loop (a rate
    baked into the recording would not), and like the CPU."""
    eager = _val_loss_after_training("vae", "cuda", cuda_graphs=False, **CONTROLS)
    assert _val_loss_after_training("vae", "cuda", **CONTROLS) == pytest.approx(eager, rel=0.01)
    cpu = _val_loss_after_training("vae", "cpu", **CONTROLS)
    assert eager == pytest.approx(cpu, rel=0.03)
    plain = _val_loss_after_training("vae", "cuda")
    assert abs(eager - plain) > 0.01 * plain  # the controls do change the run


def test_a_graphed_run_with_the_controls_resumes_where_it_left_off(tmp_path):
    controls = {"lr_schedule": "cosine", "clip_grad": 1.0, "kl_warmup": 1, "early_stop": 2}
    train("vae", epochs=3, out=tmp_path / "whole", device="cuda", **controls, **QUIET)
    stop_after_one = [lambda run, epoch, metrics: aegen.STOP]  # the schedule spans 3 epochs
    train(
        "vae",
        epochs=3,
        out=tmp_path / "run",
        device="cuda",
        callbacks=stop_after_one,
        **controls,
        **QUIET,
    )
    train("vae", epochs=3, out=tmp_path / "run", resume=True, device="cuda", **QUIET)
    resumed, whole = read_history(tmp_path / "run"), read_history(tmp_path / "whole")
    assert [m["lr"] for m in resumed] == [m["lr"] for m in whole]
    assert resumed[-1]["val_loss"] == pytest.approx(whole[-1]["val_loss"], rel=1e-4)


def test_a_model_with_several_optimizers_stays_eager():
    images = load_dataset("mnist-5k").images[:256]
    trainer = Trainer(
        build_model("vae-gan"), TrainSettings(epochs=1), images, images[:64], device="cuda"
    )
    assert trainer.graphed_step is None


def test_a_gpu_run_resumes_on_the_cpu_and_a_cpu_run_on_the_gpu(tmp_path):
    """Checkpoints are device-free: the run goes GPU -> CPU -> GPU and ends where a CPU run does
    (not bit-exactly: the two devices draw different noise and round differently)."""
    train("vae", epochs=1, out=tmp_path / "run", device="cuda", **QUIET)
    train("vae", epochs=2, out=tmp_path / "run", resume=True, device="cpu", **QUIET)
    train("vae", epochs=3, out=tmp_path / "run", resume=True, device="cuda", **QUIET)
    train("vae", epochs=3, out=tmp_path / "whole", device="cpu", **QUIET)
    moved, whole = read_history(tmp_path / "run"), read_history(tmp_path / "whole")
    assert [m["epoch"] for m in moved] == [1, 2, 3]
    assert moved[-1]["val_loss"] < moved[0]["val_loss"]
    assert moved[-1]["val_loss"] == pytest.approx(whole[-1]["val_loss"], rel=0.03)


def test_the_nll_estimate_agrees_between_cpu_and_gpu():
    model = build_model("vae")
    images = load_dataset("mnist-5k").images[:128].unsqueeze(1).float() / 255
    on_cpu = elbo_and_nll(model, images, k=200)
    on_gpu = elbo_and_nll(model.cuda(), images.cuda(), k=200)
    assert on_gpu["nll"] == pytest.approx(on_cpu["nll"], rel=0.01)
    assert on_gpu["elbo"] == pytest.approx(on_cpu["elbo"], rel=0.01)


def test_the_cli_trains_in_bf16_on_the_gpu_and_samples(tmp_path):
    from aegen.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "vae",
                "--epochs",
                "1",
                "--device",
                "cuda",
                "--precision",
                "bf16",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert main(["sample", str(run), "-n", "16", "--out", str(tmp_path / "s.pt")]) == 0
    assert torch.load(tmp_path / "s.pt").shape == (16, 1, 28, 28)


HOST_READING_MODEL = """
from aegen.data.datasets import load_dataset
from aegen.models.vae import VAE
from aegen.settings.train import TrainSettings
from aegen.training.trainer import Trainer

class HostReadingVAE(VAE):  # a user's model whose loss reads a value back to the host
    def loss(self, x, labels=None):
        out = super().loss(x, labels)
        out.loss.item()
        return out

images = load_dataset("mnist-5k").images[:1024]
Trainer(HostReadingVAE(), TrainSettings(epochs=1, cuda_graphs={graphs}), images, images[:64],
        device="{device}").fit(progress=False)
"""


@pytest.mark.parametrize("graphs", [True, False])
def test_a_loss_that_reads_back_to_the_host_gets_a_clear_error_naming_the_way_out(graphs):
    """In a process of its own: a failed recording leaves that process's CUDA generator unusable."""
    script = HOST_READING_MODEL.format(device="cuda", graphs=graphs)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    if graphs:
        assert done.returncode != 0
        assert "could not be recorded as a CUDA graph" in done.stderr
        assert "--no-cuda-graphs" in done.stderr
    else:
        assert done.returncode == 0, done.stderr[-2000:]
