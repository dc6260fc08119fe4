"""The training controls: learning-rate schedules, gradient clipping, KL warm-up, early stopping,
the best weights kept beside the last, and callbacks; each resumes bit-exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch

import aegen
from aegen.cli import main
from aegen.data.datasets import load_dataset, train_val_split
from aegen.errors import ConfigError, RunError
from aegen.files.tensors import load_tensors
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.controls import best_epoch, epochs_without_gain, kl_factor, rate_factor
from aegen.training.run import load, train
from aegen.training.trainer import Trainer

CONTROLS = {
    "lr_schedule": "cosine",
    "early_stop": 2,
    "clip_grad": 1.0,
    "kl_warmup": 2,
}
QUIET = {"progress": False, "val_fraction": 0.5, "device": "cpu"}


def small_split(n: int = 1024):
    data = load_dataset("mnist-5k")
    train_index, val_index = train_val_split(len(data), 0.1, seed=0)
    return data.images[train_index][:n], data.images[val_index][:256]


def test_the_schedules_at_known_steps():
    assert rate_factor("constant", 37, 100) == 1.0
    # 101 steps: the first is step 0, the last step 100, where each schedule ends.
    assert [rate_factor("cosine", s, 101) for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0])
    onecycle = [rate_factor("onecycle", s, 101) for s in (0, 15, 30, 65, 100)]
    assert onecycle == pytest.approx([1 / 25, (1 / 25 + 1) / 2, 1, (1 + 4e-6) / 2, 4e-6])
    with pytest.raises(ValueError):
        rate_factor("linear", 0, 10)


def test_the_kl_warmup_rises_linearly_from_zero_and_stays_at_one():
    assert [kl_factor(s, 8) for s in (0, 2, 4, 8, 100)] == [0, 0.25, 0.5, 1, 1]
    assert kl_factor(0, 0) == 1.0


def test_best_epoch_and_patience_are_read_from_the_history():
    history = [{"epoch": e, "val_loss": v} for e, v in enumerate([5.0, 4.0, 4.5, 4.0, 4.2], 1)]
    assert best_epoch(history) == 2  # the first of equal losses
    assert epochs_without_gain(history) == 3
    assert best_epoch([]) == 0 and epochs_without_gain([]) == 0


def test_the_cosine_rate_is_set_every_step_and_logged_falling():
    images, val = small_split(512)  # 4 steps an epoch
    settings = TrainSettings(epochs=3, lr=2e-3, lr_schedule="cosine")
    trainer = Trainer(build_model("vae"), settings, images, val)
    seen = []
    step = trainer._step
    trainer._step = lambda index: (
        seen.append(trainer.optimizers["model"].param_groups[0]["lr"]),
        step(index),
    )[1]
    history = trainer.fit(progress=False)
    total = 3 * 4
    assert seen == pytest.approx(
        [2e-3 * 0.5 * (1 + math.cos(math.pi * s / (total - 1))) for s in range(total)]
    )
    rates = [m["lr"] for m in history]
    assert rates == pytest.approx([seen[3], seen[7], seen[11]]) and rates[0] > rates[1] > rates[2]


def test_a_zero_kl_share_leaves_the_reconstruction_term_alone():
    """The loss on a fixed input is BCE + kl_scale * kl_weight * KL: at share 0 it is the BCE."""
    torch.manual_seed(0)
    model = build_model("vae", {"kl_weight": 3.0})
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    full = model.loss(x)
    model.kl_scale.fill_(0.0)
    torch.manual_seed(1)
    none = model.loss(x)
    assert none.loss.item() == pytest.approx(none.terms["recon"].item(), rel=1e-6)
    expected = full.terms["recon"] + 3.0 * full.terms["kl"]
    assert full.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_kl_warmup_is_logged_and_the_validation_loss_keeps_the_full_weight():
    images, val = small_split(512)
    trainer = Trainer(build_model("vae"), TrainSettings(epochs=3, kl_warmup=2), images, val)
    history = trainer.fit(progress=False)
    assert [m["kl_weight"] for m in history] == pytest.approx([3 / 8, 7 / 8, 1.0])
    for m in history:  # validation at full weight: loss = recon + kl
        assert m["val_loss"] == pytest.approx(m["val_recon"] + m["val_kl"], rel=1e-5)
    assert trainer.model.kl_scale.item() == 1.0


@pytest.mark.parametrize("name, options", [("ae", {}), ("vae", {"importance_samples": 2})])
def test_a_kl_warmup_without_a_kl_term_is_refused(tmp_path, name, options):
    images, val = small_split(256)
    with pytest.raises(ConfigError, match="--kl-warmup needs a model whose loss has a KL term"):
        Trainer(build_model(name, options), TrainSettings(kl_warmup=1), images, val)
    with pytest.raises(ConfigError, match="--kl-warmup needs a model whose loss has a KL term"):
        train(name, out=tmp_path / "run", kl_warmup=1, model_options=options, **QUIET)
    assert not (tmp_path / "run").exists()  # refused before any folder is made


@pytest.mark.parametrize("name", ["vae", "vae-gan"])
def test_clipping_bounds_the_gradient_norm_of_each_update_group(name):
    images, val = small_split(256)

    def norms(clip):
        torch.manual_seed(0)
        trainer = Trainer(build_model(name), TrainSettings(clip_grad=clip), images, val)
        trainer._step(torch.arange(64))
        return [
            torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in params if p.grad is not None])
            ).item()
            for params in trainer.groups.values()
        ]

    free, clipped = norms(None), norms(0.5)
    assert all(n > 0.5 for n in free)  # the bound binds
    assert clipped == pytest.approx([0.5] * len(free), rel=1e-4)


def test_early_stopping_ends_after_the_patience_without_a_lower_validation_loss(monkeypatch):
    images, val = small_split(256)
    trainer = Trainer(build_model("ae"), TrainSettings(epochs=10, early_stop=2), images, val)
    scripted = iter([5.0, 4.0, 4.5, 4.0, 3.0, 3.5])
    monkeypatch.setattr(trainer, "validation_loss", lambda *a, **k: {"loss": next(scripted)})
    history = trainer.fit(progress=False)
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    assert (
        "stopped early after epoch 4" in trainer.stop_reason and "epoch 2's" in trainer.stop_reason
    )


def test_the_vae_gans_best_epoch_is_judged_by_its_pixels_not_its_moving_features(monkeypatch):
    images, val = small_split(256)
    trainer = Trainer(build_model("vae-gan"), TrainSettings(epochs=5, early_stop=1), images, val)
    losses = iter([(9.0, 5.0), (8.0, 6.0), (7.0, 7.0)])  # the loss falls, the pixels' BCE rises

    def scripted(*args, **kwargs):
        loss, bce = next(losses)
        return {"loss": loss, "pixel_bce": bce}

    monkeypatch.setattr(trainer, "validation_loss", scripted)
    history = trainer.fit(progress=False)
    assert len(history) == 2 and "pixel bce (the model's measure)" in trainer.stop_reason
    assert best_epoch(history, "pixel_bce") == 1 and best_epoch(history) == 2


def test_a_run_from_before_the_best_weights_resumes_and_keeps_them_once_beaten(tmp_path):
    from safetensors.torch import save_file

    run_dir = tmp_path / "run"
    train("ae", epochs=3, out=run_dir, **QUIET)
    # As an older aegen left it: no best weights in the checkpoint, no model-best file.
    tensors, metadata = load_tensors(run_dir / "checkpoint.safetensors")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("best.")}
    del metadata["best_epoch"]
    save_file(tensors, run_dir / "checkpoint.safetensors", metadata)
    (run_dir / "model-best.safetensors").unlink()
    train("ae", epochs=5, out=run_dir, resume=True, **QUIET)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    best = best_epoch(history)
    if best > 3:  # beaten after the resume: kept from then on
        assert load_tensors(run_dir / "model-best.safetensors")[1]["epoch"] == str(best)
        assert load(run_dir).weights == "best"
    else:  # the best epoch's weights were never kept: none are claimed
        assert not (run_dir / "model-best.safetensors").exists()
        assert load(run_dir).weights == "last"


def test_a_run_with_every_control_resumes_bit_exactly(tmp_path):
    # One thread: on a busy machine the tuner may choose other counts in the two runs, and the
    # validation losses' sums then differ in their last bits.
    train("vae", epochs=4, out=tmp_path / "whole", threads=1, **CONTROLS, **QUIET)
    train(
        "vae",
        epochs=4,
        out=tmp_path / "parts",
        threads=1,
        **CONTROLS,
        **QUIET,
        callbacks=[lambda r, e, m: aegen.STOP if e == 2 else None],
    )
    train("vae", epochs=4, out=tmp_path / "parts", resume=True, **QUIET)
    for name in ("model.safetensors", "model-best.safetensors", "checkpoint.safetensors"):
        whole, parts = (
            load_tensors(tmp_path / "whole" / name),
            load_tensors(tmp_path / "parts" / name),
        )
        assert whole[0].keys() == parts[0].keys()
        assert all(torch.equal(whole[0][k], parts[0][k]) for k in whole[0]), name
    untimed = lambda run: [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (run / "history.jsonl").read_text().splitlines()
    ]
    assert untimed(tmp_path / "whole") == untimed(tmp_path / "parts")
    assert (
        json.loads((tmp_path / "parts" / "config.json").read_text())["train"]["lr_schedule"]
        == "cosine"
    )


def test_the_best_weights_are_kept_beside_the_last_and_loaded_by_default(tmp_path):
    run_dir = tmp_path / "run"
    # A rate this high makes the validation loss jump about, so best and last differ.
    trained = train("ae", epochs=6, lr=0.05, out=run_dir, **QUIET)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    best = best_epoch(history)
    tensors, metadata = load_tensors(run_dir / "model-best.safetensors")
    assert metadata["epoch"] == str(best)
    assert load(run_dir).weights == "best" and trained.weights == "best"
    assert all(torch.equal(tensors[k], v) for k, v in load(run_dir).model.state_dict().items())
    assert all(torch.equal(tensors[k], v) for k, v in trained.model.state_dict().items())
    last = load(run_dir, weights="last")
    last_tensors = load_tensors(run_dir / "model.safetensors")[0]
    assert all(torch.equal(last_tensors[k], v) for k, v in last.model.state_dict().items())
    if best != len(history):
        assert not torch.equal(load(run_dir).sample(4), last.sample(4))
    (run_dir / "model-best.safetensors").unlink()
    assert load(run_dir).weights == "last"  # a run without them: the last, as before
    with pytest.raises(RunError, match="has no model-best.safetensors"):
        load(run_dir, weights="best")
    with pytest.raises(ConfigError, match="unknown weights 'first'"):
        load(run_dir, weights="first")


def test_the_cli_samples_and_evaluates_the_weights_asked_for(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train("ae", epochs=2, out=run_dir, **QUIET)
    for weights in ("best", "last"):
        out = tmp_path / f"{weights}.npy"
        assert (
            main(["sample", str(run_dir), "-n", "4", "--weights", weights, "--out", str(out)]) == 0
        )
    (run_dir / "model-best.safetensors").unlink()
    assert main(["sample", str(run_dir), "-n", "4", "--weights", "best"]) == 2
    assert "has no model-best.safetensors" in capsys.readouterr().err


def test_callbacks_see_every_epoch_and_a_stop_ends_the_run_cleanly(tmp_path):
    seen = []

    class Recorder:
        def on_epoch_end(self, run, epoch, metrics):
            seen.append((epoch, metrics["val_loss"], run.sample(2, seed=0).shape))
            return aegen.STOP if epoch == 2 else "anything else does not stop"

    calls = []
    trained = train(
        "ae",
        epochs=5,
        out=tmp_path / "run",
        callbacks=[Recorder(), lambda r, e, m: calls.append(e)],
        **QUIET,
    )
    assert [s[0] for s in seen] == [1, 2] and calls == [1, 2]  # every callback, then stop
    assert seen[0][2] == (2, 1, 28, 28)
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and trained.config.settings.epochs == 5
    # Sampling inside a callback leaves training untouched: the same weights as without one.
    train("ae", epochs=2, out=tmp_path / "plain", **QUIET)
    ours, plain = (
        load_tensors(tmp_path / "run" / "model.safetensors")[0],
        load_tensors(tmp_path / "plain" / "model.safetensors")[0],
    )
    assert all(torch.equal(ours[k], plain[k]) for k in plain)
    with pytest.raises(ConfigError, match="a callback must be a function"):
        train("ae", epochs=1, out=tmp_path / "bad", callbacks=[42], **QUIET)
    assert not (tmp_path / "bad").exists()


def test_the_controls_are_cli_flags_recorded_in_config(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "vae",
        "--epochs",
        "2",
        "--lr-schedule",
        "onecycle",
        "--clip-grad",
        "0.5",
        "--kl-warmup",
        "1",
        "--early-stop",
        "3",
        "--val-fraction",
        "0.5",
        "--out",
        str(run_dir),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lr " in out and "kl weight" in out
    recorded = json.loads((run_dir / "config.json").read_text())["train"]
    assert (
        recorded["lr_schedule"],
        recorded["clip_grad"],
        recorded["kl_warmup"],
        recorded["early_stop"],
    ) == ("onecycle", 0.5, 1, 3)
    resumed = ["train", "vae", "--out", str(run_dir), "--resume", "--quiet", "--no-tensorboard"]
    assert main(resumed) == 0  # a resumed run may switch TensorBoard off (or on) again
    for bad, words in (
        (["--lr-schedule", "linear"], "unknown lr_schedule 'linear'"),
        (["--clip-grad", "0"], "must be a positive number"),
        (["--kl-warmup", "-1"], "must be at least 0"),
    ):
        with pytest.raises(SystemExit):
            main(["train", "vae", *bad])
        assert words in capsys.readouterr().err


def test_tensorboard_events_read_back_with_tensorboards_own_reader(tmp_path):
    pytest.importorskip("tensorboard", reason="needs aegen[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    train("vae", epochs=2, out=run_dir, tensorboard=True, kl_warmup=1, **QUIET)
    train("vae", epochs=3, out=run_dir, resume=True, **QUIET)  # tensorboard stays on, recorded
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("loss/train", "loss/val", "recon/val", "kl/train", "lr", "kl_weight"):
        assert tag in tags["scalars"], tag
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    val = events.Scalars("loss/val")
    assert [e.step for e in val] == [1, 2, 3]
    assert [e.value for e in val] == pytest.approx([m["val_loss"] for m in history], rel=1e-6)
    assert [e.value for e in events.Scalars("kl_weight")] == pytest.approx(
        [m["kl_weight"] for m in history]
    )
    assert {"samples", "reconstructions"} <= set(tags["images"])
    assert [e.step for e in events.Images("samples")] == [2, 3]  # after each run's last epoch


def test_tensorboard_without_its_package_is_one_clear_line(tmp_path, monkeypatch):
    import sys

    train("ae", epochs=1, out=tmp_path / "old", **QUIET)
    config = (tmp_path / "old" / "config.json").read_bytes()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'aegen\[tensorboard\]'"):
        train("ae", epochs=1, out=tmp_path / "run", tensorboard=True, **QUIET)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"pip install 'aegen\[tensorboard\]'"):
        train("ae", epochs=2, out=tmp_path / "old", resume=True, tensorboard=True, **QUIET)
    assert (tmp_path / "old" / "config.json").read_bytes() == config  # nothing rewritten
