"""Training lowers the held-out loss, resumes bit-exactly and stops clearly on NaN."""

import json

import pytest
import torch

from aegen.data.datasets import load_dataset, train_val_split
from aegen.errors import TrainingError
from aegen.files.tensors import load_tensors
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.run import train
from aegen.training.trainer import Trainer, rank_noise_seed


def mnist_5k_split():
    data = load_dataset("mnist-5k")
    train_index, val_index = train_val_split(len(data), 0.1, seed=0)
    return data.images[train_index], data.images[val_index]


@pytest.mark.parametrize("name", ["ae", "conv-ae", "vae", "conv-vae"])
def test_a_few_hundred_steps_lower_the_held_out_loss_well_below_the_start(name):
    train_images, val_images = mnist_5k_split()
    config = TrainSettings(epochs=8)  # the model's own weight decay  # 8 x 36 = 288 steps
    trainer = Trainer(build_model(name), config, train_images, val_images)
    before = trainer.validation_loss(val_images)["loss"]
    history = trainer.fit(progress=False)
    after = trainer.validation_loss(val_images)["loss"]
    assert after < 0.5 * before
    assert history[-1]["val_loss"] == pytest.approx(after, rel=0.02)  # VAE: other noise draw
    assert history[-1]["loss"] < history[0]["loss"]


def test_vae_reports_reconstruction_and_kl_separately():
    train_images, val_images = mnist_5k_split()
    trainer = Trainer(build_model("vae"), TrainSettings(epochs=1), train_images[:512], val_images)
    metrics = trainer.fit(progress=False)[0]
    for part in ("recon", "kl", "val_recon", "val_kl"):
        assert metrics[part] > 0
    assert metrics["val_loss"] == pytest.approx(metrics["val_recon"] + metrics["val_kl"], rel=1e-4)


def test_nan_loss_stops_training_naming_epoch_and_step():
    train_images, val_images = mnist_5k_split()
    model = build_model("ae")
    with torch.no_grad():
        model.decoder[0].weight.fill_(float("nan"))
    trainer = Trainer(model, TrainSettings(epochs=2), train_images, val_images)
    with pytest.raises(TrainingError, match=r"became nan at epoch 1, step 1; the learning rate"):
        trainer.fit(progress=False)


def weights(run_dir):
    return load_tensors(run_dir / "model.safetensors")[0]


def strip_times(run_dir):
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.mark.parametrize("name", ["vae", "conv-ae"])  # conv-ae trains in channels_last
def test_resume_matches_uninterrupted(tmp_path, name):
    # One pinned thread count: conv-ae's floats round differently with another count.
    quiet = {"progress": False, "val_fraction": 0.5, "device": "cpu", "threads": 2}
    train(name, epochs=3, out=tmp_path / "whole", **quiet)
    train(name, epochs=1, out=tmp_path / "parts", **quiet)
    resumed = train(name, epochs=3, out=tmp_path / "parts", resume=True, **quiet)
    whole, parts = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
    assert strip_times(tmp_path / "whole") == strip_times(tmp_path / "parts")
    assert resumed.config.settings.epochs == 3


def test_torchrun_two_processes_match_single_process_training(tmp_path):
    import os
    import subprocess
    import sys

    args = [
        "train",
        "ae",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--val-fraction",
        "0.5",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "aegen", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
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
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # A rank's own error comes before torchrun's summary: show both.
    assert ranks.returncode == 0, ranks.stderr[:3000] + "\n...\n" + ranks.stderr[-1500:]
    assert ranks.stdout.count("run folder:") == 1  # printed by rank 0 only
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(one[k], two[k], atol=1e-4, rtol=1e-3) for k in one)
    lines = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2  # written once, by rank 0


@pytest.mark.parametrize(("name", "same"), [("ae", True), ("vae", False)])
def test_each_torchrun_rank_draws_noise_of_its_own_after_the_shared_shuffle(name, same):
    """Ranks share the epoch's order (so each takes its slice of the same batches) but not its
    noise: with the epoch seed alone every rank drew rank 0's posterior samples. A rank-1
    trainer (alone here) takes the same steps as rank 0 for a model without noise, other ones
    for a VAE."""
    images = load_dataset("mnist-5k", "train").images[:512]
    finals = []
    for rank in (0, 1):
        torch.manual_seed(0)
        trainer = Trainer(build_model(name), TrainSettings(threads=1), images, images[:64])
        trainer.rank = rank
        trainer.train_epoch(1)
        finals.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(finals[0], finals[1]) == same
    seeds = {rank_noise_seed(0, epoch, rank) for epoch in (1, 2) for rank in (1, 2, 3)}
    assert len(seeds) == 6 and all(0 <= seed < 2**63 for seed in seeds)
