"""`aegen score` writes one row of scores per image (reconstruction error; ELBO and NLL for VAEs),
the numbers agree with the library's own, and every user mistake is one line and exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aegen.cli import main
from aegen.data import own_images
from aegen.data.datasets import load_dataset
from aegen.data.pixels import unit_images
from aegen.latent.likelihood import elbo_and_nll, per_image_elbo_and_nll
from aegen.scoring.per_image import images_to_score, per_image_scores, write_scores
from aegen.training.run import train

N = 100  # digits in the test arrays: ten of each class


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Folders decode into this test's cache, never the user's."""
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))
    own_images._load_cached.cache_clear()


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("mnist-5k")
    index = torch.arange(0, 5000, 5000 // N)
    return data.images[index], data.labels[index]


@pytest.fixture
def unlabelled(tmp_path, digits):
    path = tmp_path / "digits.npy"
    np.save(path, digits[0].numpy())
    return path


@pytest.fixture
def labelled(tmp_path, digits):
    path = tmp_path / "digits.npz"
    np.savez(path, images=digits[0].numpy(), labels=digits[1].numpy())
    return path


@pytest.fixture(scope="module")
def own_runs(tmp_path_factory):
    """Runs this module may write into: a plain autoencoder and a conditional VAE, one epoch."""
    root = tmp_path_factory.mktemp("score-runs")
    return {
        name: train(name, "mnist-5k", epochs=1, out=root / name, progress=False)
        for name in ("ae", "cvae")
    }


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def read_csv(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegen: error: "), err
    return lines[0]


def test_recon_mse_is_each_images_own_error(capsys, trained_runs, unlabelled, digits, tmp_path):
    trained = trained_runs["ae"]
    out = tmp_path / "scores.csv"
    status, stdout, _ = run_cli(capsys, "score", trained.run_dir, unlabelled, "--out", out)
    header, rows = read_csv(out)
    assert status == 0 and stdout.splitlines()[0] == str(out)
    assert f"scored {N} images" in stdout and "recon_mse" in stdout
    assert header == ["index", "label", "recon_mse"]  # a plain autoencoder has no NLL
    assert [int(r[0]) for r in rows] == list(range(N)) and {r[1] for r in rows} == {"-1"}
    images = digits[0][:5]
    by_hand = (trained.reconstruct(images) - images[:, None].float() / 255).pow(2).mean((1, 2, 3))
    written = torch.tensor([float(r[2]) for r in rows[:5]])
    assert torch.allclose(written, by_hand, rtol=1e-6, atol=0)


def test_per_image_nll_averages_to_elbo_and_nll(trained_runs, digits):
    model = trained_runs["vae"].model
    images = unit_images(digits[0])
    elbo, nll = per_image_elbo_and_nll(model, images, k=20, seed=3, batch=32)
    mean = elbo_and_nll(model, images, k=20, seed=3, batch=32)
    assert elbo.shape == nll.shape == (N,)
    assert elbo.double().mean().item() == pytest.approx(mean["elbo"], rel=1e-6)
    assert nll.double().mean().item() == pytest.approx(mean["nll"], rel=1e-6)
    # log of the mean weight >= mean of the log weights (Jensen), image by image
    assert (nll <= -elbo + 1e-4).all()
    # uint8 images are the same images: the same draws give the same numbers
    from_uint8 = per_image_elbo_and_nll(model, digits[0][:, None], k=20, seed=3, batch=32)
    assert torch.equal(from_uint8[0], elbo) and torch.equal(from_uint8[1], nll)


def test_vae_scores_as_json_with_labels_and_nll(capsys, trained_runs, labelled, digits, tmp_path):
    trained = trained_runs["vae"]
    out = tmp_path / "scores.json"
    argv = ["score", trained.run_dir, labelled, "--out", out, "--nll-k", "10", "--seed", "1"]
    status, stdout, _ = run_cli(capsys, *argv)
    table = json.loads(out.read_text())
    assert status == 0 and "nll" in stdout.splitlines()[1]
    assert table["columns"] == ["index", "label", "recon_mse", "elbo", "nll"]
    assert len(table["rows"]) == N and [r[1] for r in table["rows"]] == digits[1].tolist()
    _, mean = per_image_elbo_and_nll(trained.model, unit_images(digits[0]), 10, 1)
    nll = torch.tensor([r[4] for r in table["rows"]])
    assert torch.allclose(nll, mean, rtol=1e-6)


def test_a_folder_of_larger_colour_images_is_resized_and_scored(
    capsys, trained_runs, digits, tmp_path
):
    folder = tmp_path / "foreign"
    folder.mkdir()
    for i, digit in enumerate(digits[0][:6]):
        big = np.kron(digit.numpy(), np.ones((2, 2), np.uint8))  # 56 x 56
        Image.fromarray(np.stack([big, big // 2, 255 - big], -1)).save(folder / f"{i}.png")
    out = tmp_path / "foreign.csv"
    status, stdout, _ = run_cli(
        capsys, "score", trained_runs["conv-ae"].run_dir, folder, "--out", out
    )
    header, rows = read_csv(out)
    assert status == 0 and "scored 6 images" in stdout
    assert header == ["index", "label", "name", "recon_mse"]
    assert [r[2] for r in rows] == [f"{i}.png" for i in range(6)]
    data = images_to_score(trained_runs["conv-ae"], str(folder))
    assert data.image_shape == (1, 28, 28)
    assert all(0 <= float(r[3]) <= 1 for r in rows)


def test_default_output_is_named_after_the_images(capsys, own_runs, unlabelled):
    run_dir = own_runs["ae"].run_dir
    status, stdout, _ = run_cli(capsys, "score", run_dir, unlabelled)
    assert status == 0 and stdout.splitlines()[0] == str(run_dir / "scores-digits.csv")
    assert len(read_csv(run_dir / "scores-digits.csv")[1]) == N


def test_a_conditional_vae_scores_labelled_images(own_runs, labelled):
    trained = own_runs["cvae"]
    scores = per_image_scores(trained, images_to_score(trained, str(labelled)), nll_k=5)
    assert set(scores) == {"recon_mse", "elbo", "nll"}
    assert all(values.shape == (N,) for values in scores.values())


def test_labels_keep_the_runs_class_numbers(capsys, own_runs, digits, tmp_path):
    # an array labelled only 3 and 7 loads as classes "3" and "7" (0 and 1): scored as 3 and 7
    keep = (digits[1] == 3) | (digits[1] == 7)
    path = tmp_path / "three-seven.npz"
    np.savez(path, images=digits[0][keep].numpy(), labels=digits[1][keep].numpy())
    out = tmp_path / "s.json"
    status, _, _ = run_cli(
        capsys, "score", own_runs["cvae"].run_dir, path, "--out", out, "--nll-k", "2"
    )
    rows = json.loads(out.read_text())["rows"]
    assert status == 0 and [r[1] for r in rows] == digits[1][keep].tolist()


def test_a_conditional_run_refuses_unlabelled_images(capsys, own_runs, unlabelled, tmp_path):
    out = tmp_path / "s.csv"
    status, _, err = run_cli(capsys, "score", own_runs["cvae"].run_dir, unlabelled, "--out", out)
    assert status == 2 and "has no labels" in one_error_line(err) and not out.exists()


def test_labels_beyond_the_models_classes_are_refused(capsys, own_runs, digits, tmp_path):
    path = tmp_path / "twelve.npz"
    labels = np.arange(N) % 12
    names = np.array([f"c{i}" for i in range(12)])
    np.savez(path, images=digits[0].numpy(), labels=labels, classes=names)
    status, _, err = run_cli(capsys, "score", own_runs["cvae"].run_dir, path)
    assert status == 2 and "are not among those cvae trained with" in one_error_line(err)


@pytest.mark.parametrize(
    "images, out, message",
    [
        ("mnst", "s.csv", "unknown dataset 'mnst' (did you mean 'mnist'?)"),
        ("{tmp}/nowhere.npy", "s.csv", "nowhere.npy does not exist"),
        ("{tmp}/nowhere/", "s.csv", "nowhere does not exist"),
        ("mnist", "s.txt", "choose a name ending in .csv, .json"),
    ],
)
def test_user_mistakes_get_one_line_and_status_2(
    capsys, trained_runs, tmp_path, images, out, message
):
    status, stdout, err = run_cli(
        capsys,
        "score",
        trained_runs["vae"].run_dir,
        images.format(tmp=tmp_path),
        "--out",
        tmp_path / out,
    )
    assert status == 2 and message in one_error_line(err) and not stdout
    assert not (tmp_path / out).exists()


def test_a_bad_suffix_is_refused_before_the_run_is_read(capsys, tmp_path):
    status, _, err = run_cli(capsys, "score", tmp_path / "no-run", "mnist", "--out", "x.xlsx")
    assert status == 2 and "choose a name ending in .csv, .json" in one_error_line(err)


def test_write_scores_layout(tmp_path):
    scores = {"recon_mse": torch.tensor([0.5, 0.25]), "nll": torch.tensor([90.125, 1e-3])}
    labels = torch.tensor([3, -1])
    write_scores(tmp_path / "s.csv", scores, labels, ["a.png", "b/c.png"])
    assert (tmp_path / "s.csv").read_text() == (
        "index,label,name,recon_mse,nll\n0,3,a.png,0.5,90.125\n1,-1,b/c.png,0.25,0.001\n"
    )
    write_scores(tmp_path / "s.JSON", scores, labels, None)
    assert json.loads((tmp_path / "s.JSON").read_text()) == {
        "columns": ["index", "label", "recon_mse", "nll"],
        "rows": [[0, 3, 0.5, 90.125], [1, -1, 0.25, 0.001]],
    }


def test_the_test_split_of_a_built_in_set(capsys, trained_runs, shared_data, tmp_path):
    out = tmp_path / "fashion.csv"
    argv = ["score", trained_runs["ae"].run_dir, "fashion-mnist", "--data-root", shared_data]
    status, stdout, _ = run_cli(capsys, *argv, "--out", out)
    header, rows = read_csv(out)
    assert status == 0 and len(rows) == 10_000 and header == ["index", "label", "recon_mse"]
    assert {int(r[1]) for r in rows} == set(range(10))


def test_score_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0
    for option in ("RUN_DIR", "IMAGES", "--out", "--nll-k", "--seed", "--data-root"):
        assert option in text
