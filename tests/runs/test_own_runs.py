"""Runs on a user's own images, end to end through the CLI: a colour folder with classes, a flat
folder, an array; every command on them; bad data is one line, exit 2, and no run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tinted import write_tinted_folder

from aegen.cli import main
from aegen.data import own_images
from aegen.data.datasets import load_dataset
from aegen.models import build_model
from aegen.scoring import classifier


@pytest.fixture(autouse=True)
def _small_judge(tmp_path, monkeypatch):
    """A private cache, and a judge trained on fewer images so that a test takes seconds."""
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(classifier, "OWN_RECIPE", classifier.Recipe(3_000, "affine"))
    own_images._load_cached.cache_clear()


@pytest.fixture(scope="module")
def tinted_digits(tmp_path_factory):
    """300 real MNIST digits (30 per class) as 32x32 colour PNGs in class sub-folders."""
    data = load_dataset("mnist-5k")
    index = torch.arange(0, 5000, 500).repeat_interleave(30) + torch.arange(30).repeat(10)
    root = tmp_path_factory.mktemp("own")
    return write_tinted_folder(
        data.images[index], data.labels[index], data.classes, root / "tinted"
    )


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_conv_vae_on_a_colour_folder_trains_samples_and_is_scored(capsys, tmp_path, tinted_digits):
    run = tmp_path / "run"
    status, out, err = cli(
        capsys, "train", "conv-vae", "--dataset", tinted_digits, "--epochs", "2", "--out", run
    )
    assert status == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["image_size"] == 32 and config["model_config"]["channels"] == 3
    assert config["data"]["classes"] == [str(d) for d in range(10)]
    assert config["data"]["dataset"] == str(tinted_digits) and len(config["data"]["digest"]) == 64

    status, _, err = cli(capsys, "sample", run, "-n", "64", "--out", tmp_path / "s.npy")
    samples = np.load(tmp_path / "s.npy")
    assert status == 0 and samples.shape == (64, 3, 32, 32) and samples.dtype == np.float32

    status, _, _ = cli(capsys, "reconstruct", run, "-n", "8", "--out", tmp_path / "r.png")
    assert status == 0 and Image.open(tmp_path / "r.png").mode == "RGB"

    status, out, err = cli(
        capsys, "evaluate", run, "--n-samples", "200", "--nll-k", "4", "--sampler", "prior"
    )
    assert status == 0, err
    scores = json.loads((run / "scores.json").read_text())
    assert scores["protocol"]["reference"].startswith("the run's held-out validation images (30;")
    assert scores["protocol"]["judge"] == "trained-cnn"
    assert scores["classifier"]["accuracy_on"].startswith("the run's held-out validation images")
    assert 0 <= scores["samplers"]["prior"]["label_entropy"] <= 1
    assert scores["reconstruction"]["images"] == 30
    for row in ("real data (training images)", "floor: their reconstructions", "prior "):
        assert row in out  # the terminal's table
    assert "KID" in out and scores["samplers"]["prior"]["images"] == 200
    likelihood = scores["likelihood"]
    assert "colour" in likelihood["pixel_bce"]["likelihood"] and "binarised" not in likelihood
    assert scores["classifier"]["best_epoch"] <= scores["classifier"]["epochs"]

    status, _, err = cli(capsys, "report", run, "--out", tmp_path / "report.html")
    assert status == 0, err
    assert "held-out validation images" in (tmp_path / "report.html").read_text()


def test_a_flat_folder_trains_conv_ae_and_is_scored_by_the_random_judge(
    capsys, tmp_path, tinted_digits
):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted(tinted_digits.rglob("*.png"))[::3]:
        (flat / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    run = tmp_path / "run"
    status, _, err = cli(
        capsys, "train", "conv-ae", "--dataset", flat, "--epochs", "1", "--out", run
    )
    assert status == 0, err
    status, _, err = cli(capsys, "evaluate", run, "--n-samples", "100", "--sampler", "gaussian")
    assert status == 0, err
    scores = json.loads((run / "scores.json").read_text())
    assert (
        scores["protocol"]["judge"] == "random-cnn" and "random" in scores["protocol"]["features"]
    )
    assert "label_entropy" not in scores["samplers"]["gaussian"]
    assert cli(capsys, "report", run, "--out", tmp_path / "r.html")[0] == 0


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_an_array_file_trains_the_fully_connected_models(capsys, tmp_path, model):
    rng = np.random.default_rng(0)
    images = rng.random((120, 3, 16, 16), dtype=np.float32)
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(120) % 3)
    run = tmp_path / "run"
    status, _, err = cli(
        capsys, "train", model, "--dataset", tmp_path / "a.npz", "--epochs", "1", "--out", run
    )
    assert status == 0, err
    status, _, _ = cli(capsys, "sample", run, "-n", "5", "--out", tmp_path / "s.npy")
    assert status == 0 and np.load(tmp_path / "s.npy").shape == (5, 3, 16, 16)


def test_a_truncated_png_is_one_line_with_exit_2_and_no_run(capsys, tmp_path, tinted_digits):
    broken = tmp_path / "broken"
    for path in tinted_digits.rglob("*.png"):
        target = broken / path.relative_to(tinted_digits)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    victim = broken / "3" / "00095.png"
    victim.write_bytes(victim.read_bytes()[:50])
    status, out, err = cli(
        capsys, "train", "conv-vae", "--dataset", broken, "--out", tmp_path / "run"
    )
    assert status == 2 and str(victim) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "model, make, message",
    [
        ("cvae", "flat", "cvae is conditional .* has no labels"),
        ("cvae", "one-class", "cvae is conditional .* has one class"),
        ("conv-vae", "30px", r"divisible by 4 \(28, 32, 64, \.\.\.\), got 30"),
        ("conv-ae", "30px", r"multiple of 16 \(32, 48, 64, \.\.\.\), got 30"),
        ("vae", "not-square", "take square ones: pass --image-size"),
    ],
)
def test_data_a_model_cannot_take_is_one_line(capsys, tmp_path, model, make, message):
    folder = tmp_path / "data"
    shape = {"30px": (30, 30), "not-square": (20, 24)}.get(make, (16, 16))
    for i in range(6):
        sub = folder / "only" if make == "one-class" else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(shape, i * 40, np.uint8)).save(sub / f"{i}.png")
    status, _, err = cli(capsys, "train", model, "--dataset", folder, "--out", tmp_path / "run")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "run").exists()


def test_a_model_option_that_contradicts_the_data_points_at_image_size(
    capsys, tmp_path, tinted_digits
):
    status, _, err = cli(
        capsys,
        "train",
        "conv-vae",
        "--dataset",
        tinted_digits,
        "--option",
        "image_size=28",
        "--out",
        tmp_path / "run",
    )
    assert status == 2 and "pass --image-size 28" in err
    status, _, err = cli(
        capsys,
        "train",
        "conv-vae",
        "--dataset",
        tinted_digits,
        "--image-size",
        "28",
        "--channels",
        "1",
        "--epochs",
        "1",
        "--out",
        tmp_path / "run",
    )
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["image_shape"] == [
        1,
        28,
        28,
    ]


def test_a_run_refuses_a_folder_that_changed_since_it_trained(capsys, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((16, 16), i * 10, np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert cli(capsys, "train", "ae", "--dataset", folder, "--epochs", "1", "--out", run)[0] == 0
    status, out, err = cli(capsys, "train", "ae", "--epochs", "2", "--out", run, "--resume")
    assert status == 0 and "epoch 2/2" in out, err  # the same data: it continues
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "extra.png")
    status, _, err = cli(capsys, "reconstruct", run, "--out", tmp_path / "r.png")
    assert status == 2 and "changed since" in err
    status, _, err = cli(
        capsys, "train", "ae", "--dataset", folder, "--epochs", "3", "--out", run, "--resume"
    )
    assert status == 2 and "changed since" in err


@pytest.mark.parametrize("model", ["ae", "vae", "cvae", "conv-ae", "conv-vae", "vae-gan"])
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_takes_28_32_and_64_px_in_gray_and_colour(model, size, channels):
    net = build_model(model, {"image_size": size, "channels": channels})
    x = torch.rand(4, channels, size, size)
    labels = torch.arange(4)
    low, high = net.value_range
    rebuilt = net(x * (high - low) + low, labels)
    assert rebuilt.shape == x.shape and low <= rebuilt.min() and rebuilt.max() <= high
    loss = net.loss(x * (high - low) + low, labels).loss
    assert torch.isfinite(loss)


def test_the_explorer_serves_an_unlabelled_colour_run(capsys, tmp_path):
    pytest.importorskip("flask", reason="the explorer needs Flask: pip install 'aegen[explore]'")
    import io

    from aegen.training.run import load
    from aegen.views.explore import Explorer

    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8))
    run = tmp_path / "run"
    status, _, err = cli(
        capsys, "train", "conv-vae", "--dataset", tmp_path / "a.npy", "--epochs", "1", "--out", run
    )
    assert status == 0, err
    explorer = Explorer(load(run))
    info = explorer.info()
    assert info["classes"] == [] and {point[-1] for point in info["points"]} == {-1}
    picture = Image.open(io.BytesIO(explorer.decode([0.0] * len(info["axes"]))))
    assert picture.mode == "RGB" and picture.size == (32, 32)


def test_the_python_api_and_a_config_file_take_a_path(capsys, tmp_path):
    import aegen

    images = np.random.default_rng(0).integers(0, 256, (40, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "a.npy", images)
    run = aegen.train("ae", tmp_path / "a.npy", image_size=8, epochs=1, out=tmp_path / "api")
    assert run.sample(3).shape == (3, 1, 8, 8)
    settings = {"dataset": str(tmp_path / "a.npy"), "channels": 3, "epochs": 1}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    status, _, err = cli(
        capsys, "train", "vae", "--config", tmp_path / "settings.json", "--out", tmp_path / "cfg"
    )
    assert status == 0, err
    assert aegen.load(tmp_path / "cfg").sample(2).shape == (2, 3, 12, 12)


def test_resume_takes_the_folder_by_the_relative_path_it_was_trained_with(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((30, 8, 8), np.uint8))
    assert cli(capsys, "train", "ae", "--dataset", "a.npy", "--epochs", "1")[0] == 0
    status, out, err = cli(
        capsys,
        "train",
        "ae",
        "--dataset",
        "a.npy",
        "--epochs",
        "2",
        "--out",
        "runs/ae-a",
        "--resume",
    )
    assert status == 0 and "epoch 2/2" in out, err
    assert cli(capsys, "train", "ae", "--dataset", "a.npy", "--epochs", "1")[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ae-a", "ae-a-2"]


def test_one_class_folder_is_scored_by_the_random_judge(capsys, tmp_path):
    folder = tmp_path / "data" / "cats"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert (
        cli(capsys, "train", "ae", "--dataset", folder.parent, "--epochs", "1", "--out", run)[0]
        == 0
    )
    status, _, err = cli(capsys, "evaluate", run, "--n-samples", "50", "--sampler", "gaussian")
    assert status == 0, err
    assert json.loads((run / "scores.json").read_text())["protocol"]["judge"] == "random-cnn"


def test_sampling_in_chunks_gives_the_samples_of_one_call(capsys, tmp_path, tinted_digits):
    import aegen

    run = aegen.train("vae", tinted_digits, epochs=1, out=tmp_path / "run")
    whole = run.sample(300, seed=3, sampler="gaussian")
    parts = torch.cat(list(run.sample_in_chunks(300, seed=3, sampler="gaussian", chunk=128)))
    assert torch.equal(whole, parts)
    with pytest.raises(Exception, match=r"channels-last images, pass images.permute\(0, 3, 1, 2\)"):
        run.encode(torch.zeros(2, 32, 32, 3))


def test_a_num_classes_option_that_is_no_number_is_refused(capsys, tmp_path, tinted_digits):
    status, _, err = cli(
        capsys,
        "train",
        "cvae",
        "--dataset",
        tinted_digits,
        "--option",
        "num_classes=ten",
        "--out",
        tmp_path / "run",
    )
    assert status == 2 and "num_classes" in err and "must be an integer" in err
    assert not (tmp_path / "run").exists()
