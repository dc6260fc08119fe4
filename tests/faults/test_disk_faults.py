"""Disk trouble and absurd values: one line and exit status 2, the run folder as it was."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from aegen.cli import main
from aegen.files import atomic


def folder_bytes(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def run_copy(trained_runs, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained_runs["ae"].run_dir, target)
    return target


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
@pytest.mark.parametrize("where", ["mkstemp", "fsync"])
@pytest.mark.parametrize("command", ["train", "resume", "sample", "report", "pictures"])
def test_a_full_or_read_only_disk_is_one_line_and_loses_nothing(
    capsys, monkeypatch, run_copy, tmp_path, code, words, where, command
):
    before = folder_bytes(run_copy)

    def fail(*args, **kwargs):
        raise OSError(code, words)

    if where == "mkstemp":
        monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
    else:
        monkeypatch.setattr(atomic.os, "fsync", fail)
    argv = {
        "train": ["train", "ae", "--epochs", "1", "--out", tmp_path / "new", "--quiet"],
        "resume": ["train", "ae", "--epochs", "3", "--out", run_copy, "--resume", "--quiet"],
        "sample": ["sample", run_copy, "-n", "4"],
        "report": ["report", run_copy],
        "pictures": ["pictures", run_copy],
    }[command]
    status = main([str(a) for a in argv])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("aegen: error: ") and words in err[0]
    assert folder_bytes(run_copy) == before  # nothing half-written, no temporary file left
    assert not list(run_copy.glob(".*"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ae", "--seed", "9223372036854775807"], "seed must be between 0 and 4294967295"),
        (["train", "ae", "--batch-size", "1" + "0" * 24], "batch size must be between 1 and"),
    ],
)
def test_absurd_integers_are_refused_before_any_file(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(tmp_path / "run")])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_whose_first_epoch_hit_nan_resumes_with_a_smaller_rate(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert (
        main(["train", "vae", "--lr", "1e8", "--epochs", "1", "--out", str(run_dir), "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert "became nan at epoch 1" in err and "no epoch had finished" in err
    assert "checkpoint is intact" not in err
    assert main(["train", "vae", "--lr", "1e-3", "--out", str(run_dir), "--resume", "--quiet"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3 and (run_dir / "checkpoint.safetensors").is_file()


def test_write_atomic_leaves_no_temporary_file_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    monkeypatch.setattr(
        atomic.os,
        "fsync",
        lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
    )
    with pytest.raises(OSError, match=f"cannot write {target}"):
        atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["-n", "100000000", "--out", "{tmp}/x.npy"],
            "the number of samples must lie in 1..100,000",
        ),
        (["-n", "20000", "--out", "{tmp}/grid.png"], "a PNG grid holds at most 10,000 images"),
        (["--seed", "1" + "0" * 30], "the seed must lie in 0.."),
    ],
)
def test_absurd_sample_requests_are_one_line_before_any_work(
    capsys, run_copy, tmp_path, argv, message
):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["sample", str(run_copy), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_label_out_of_range_is_one_line(capsys, tmp_path):
    run_dir = tmp_path / "cvae"
    assert main(["train", "cvae", "--epochs", "1", "--out", str(run_dir), "--quiet"]) == 0
    for label in ("1" + "0" * 24, "10", "-1"):
        assert main(["sample", str(run_dir), "--label", label, "-n", "4"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the label must be one of the class indices in 0..9" in err[0]
    assert (
        main(
            [
                "sample",
                str(run_dir),
                "--label",
                "7",
                "-n",
                "4",
                "--out",
                str(tmp_path / "sevens.npy"),
            ]
        )
        == 0
    )


def test_a_nan_in_the_validation_loss_commits_nothing(capsys, tmp_path):
    """One huge step breaks the weights without a NaN training loss: the validation loss is
    looked at before the epoch commits, so nothing of it is written."""
    run_dir = tmp_path / "run"
    argv = ["train", "ae", "--epochs", "1", "--batch-size", "8192", "--lr", "1e38", "--quiet"]
    assert main([*argv, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the validation loss became nan after epoch 1" in err[0]
    assert "no epoch had finished" in err[0]
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]


def test_a_huge_model_option_and_a_mistyped_resume_folder_are_one_line(capsys, tmp_path):
    assert (
        main(["train", "ae", "--option", "latent_dim=100000000000", "--out", str(tmp_path / "run")])
        == 2
    )
    assert "parameters: training needs" in capsys.readouterr().err
    assert main(["train", "ae", "--resume", "--out", str(tmp_path / "typo" / "deeper")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_resume_refuses_a_run_whose_checkpoint_is_gone(capsys, run_copy):
    (run_copy / "checkpoint.safetensors").unlink()
    before = folder_bytes(run_copy)
    assert main(["train", "ae", "--resume", "--epochs", "3", "--out", str(run_copy)]) == 2
    assert "has a training history but no checkpoint.safetensors" in capsys.readouterr().err
    assert folder_bytes(run_copy) == before
