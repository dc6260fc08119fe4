"""A command that fails says so in one line, exits 2 (130 when interrupted) and leaves the run
folder byte for byte as it was: too little data to split, unbounded epochs, a resume to fewer
epochs than finished, a resume whose first write fails, a stop before or after training."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aegen.cli import main
from aegen.runs import run as run_folder
from aegen.training import run as training_run


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def folder_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder, by name (the lock file aside: it comes and goes)."""
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.name != ".lock"}


def one_line_error(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("aegen: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_one_image_in_a_folder_is_too_few_to_split(capsys, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("L", (28, 28), 128).save(folder / "a.png")
    out = tmp_path / "run"
    status, _, err = cli(capsys, "train", "vae", "--dataset", folder, "--epochs", 1, "--out", out)
    assert status == 2
    one_line_error(err, "has 1 image", "leaves none to train on")
    assert not out.exists()


def test_two_images_are_too_few_and_nothing_is_decoded_or_cached(capsys, tmp_path, monkeypatch):
    """One to train on is one too few (the run's end fits a Gaussian to its codes): refused
    from the folder's file count, before an image is decoded into the cache."""
    monkeypatch.setenv("AEGEN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "two"
    folder.mkdir()
    for name in "ab":
        Image.new("L", (28, 28), 128).save(folder / f"{name}.png")
    out = tmp_path / "run"
    status, _, err = cli(capsys, "train", "ae", "--dataset", folder, "--epochs", 1, "--out", out)
    assert status == 2
    one_line_error(err, "has 2 images", "leaves only 1 to train on", "at least 3")
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_an_evaluation_asking_for_a_trillion_samples_is_one_line(capsys, three_epochs):
    for flag in ("--n-samples", "--nll-k"):
        status, _, err = cli(capsys, "evaluate", three_epochs, flag, 10**12)
        assert status == 2
        one_line_error(err, "between 1 and 100000")


def test_one_image_in_an_array_is_too_few_to_split(capsys, tmp_path):
    array = tmp_path / "one.npy"
    np.save(array, np.zeros((1, 28, 28), np.uint8))
    out = tmp_path / "run"
    status, _, err = cli(capsys, "train", "ae", "--dataset", array, "--out", out)
    assert status == 2
    one_line_error(err, "has 1 image")
    assert not out.exists()


def test_a_validation_share_that_leaves_no_training_image_is_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    status, _, err = cli(capsys, "train", "ae", "--val-fraction", "0.99999", "--out", out)
    assert status == 2
    one_line_error(err, "5,000 images", "smaller --val-fraction")
    assert not out.exists()


def test_epochs_are_bounded(capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:  # a usage error: argparse exits
        main(["train", "ae", "--epochs", str(10**27), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "between 1 and 1000000" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture
def three_epochs(capsys, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", "ae", "--epochs", 3, "--out", run_dir, "--quiet")[0] == 0
    return run_dir


def test_a_resume_to_fewer_epochs_than_finished_is_refused(capsys, three_epochs):
    before = folder_bytes(three_epochs)
    status, _, err = cli(capsys, "train", "ae", "--epochs", 2, "--out", three_epochs, "--resume")
    assert status == 2
    one_line_error(err, "--epochs 2 is fewer than the 3 epochs")
    assert folder_bytes(three_epochs) == before


def test_a_resume_whose_first_checkpoint_fails_leaves_the_folder_as_it_was(
    capsys, three_epochs, monkeypatch
):
    before = folder_bytes(three_epochs)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder, "save_checkpoint", disk_full)
    status, _, err = cli(capsys, "train", "ae", "--epochs", 4, "--out", three_epochs, "--resume")
    assert status == 2
    one_line_error(err, "No space left on device")
    assert folder_bytes(three_epochs) == before  # config.json still says 3 epochs


def test_a_write_failing_after_an_epoch_is_committed_says_what_is_kept(
    capsys, three_epochs, monkeypatch
):
    """Epoch 4's checkpoint is in place when its weights file cannot be written: the line says
    the run keeps epochs 1-4, and the next --resume derives the other files again."""

    plain, calls = run_folder.save_weights, []

    def read_only_after_the_commit(path, net, model, **kwargs):
        calls.append(path)  # the resume derives the weights again first, then epoch 4's
        if len(calls) > 1:
            raise OSError(errno.EACCES, "Permission denied")
        plain(path, net, model, **kwargs)

    monkeypatch.setattr(run_folder, "save_weights", read_only_after_the_commit)
    status, _, err = cli(capsys, "train", "ae", "--epochs", 4, "--out", three_epochs, "--resume")
    assert status == 2
    one_line_error(err, "Permission denied", "keeps epochs 1-4", "`--resume` continues")
    monkeypatch.undo()
    assert cli(capsys, "train", "ae", "--epochs", 4, "--out", three_epochs, "--resume")[0] == 0
    history = (three_epochs / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2, 3, 4]


def test_a_resume_records_its_new_settings_with_its_first_epoch(capsys, three_epochs):
    before = (three_epochs / "config.json").read_text()
    assert '"epochs": 3' in before
    cli(capsys, "train", "ae", "--epochs", 4, "--out", three_epochs, "--resume", "--quiet")
    assert '"epochs": 4' in (three_epochs / "config.json").read_text()


def test_a_stop_while_the_config_is_written_says_nothing_was_trained(capsys, tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_folder, "write_run_config", stopped)
    status, _, err = cli(capsys, "train", "ae", "--epochs", 1, "--out", tmp_path / "run")
    assert status == 130
    assert err.startswith("aegen: interrupted before training began") and err.count("\n") == 1


def test_a_stop_while_the_pictures_are_drawn_says_every_epoch_is_kept(
    capsys, tmp_path, monkeypatch
):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "write_run_pictures", stopped)
    run_dir = tmp_path / "run"
    status, _, err = cli(capsys, "train", "ae", "--epochs", 2, "--out", run_dir, "--quiet")
    assert status == 130 and err.count("\n") == 1
    assert "keeps all 2 epochs" in err and f"aegen pictures {run_dir}" in err
    assert cli(capsys, "pictures", run_dir)[0] == 0  # which draws them again
    assert (run_dir / "samples.png").is_file()
