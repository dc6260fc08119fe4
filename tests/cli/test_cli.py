"""The CLI does what the README says, and every user mistake is one line and exit status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from aegen.cli import main
from aegen.data.datasets import load_dataset


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_train_sample_reconstruct_encode_end_to_end(capsys, tmp_path):
    run_dir = tmp_path / "run"
    status, out, _ = run_cli(capsys, "train", "ae", "--epochs", "2", "--out", run_dir)
    assert status == 0 and "epoch 2/2" in out and f"run folder: {run_dir}" in out

    status, out, _ = run_cli(capsys, "sample", run_dir, "-n", "10", "--out", tmp_path / "s.npy")
    samples = np.load(tmp_path / "s.npy")
    assert (
        status == 0
        and samples.shape == (10, 1, 28, 28)
        and 0 <= samples.min() <= samples.max() <= 1
    )

    status, out, _ = run_cli(capsys, "sample", run_dir, "--sampler", "prior")
    assert status == 0 and (run_dir / "samples-prior-seed0.png").is_file()

    status, out, _ = run_cli(capsys, "reconstruct", run_dir, "-n", "6", "--out", tmp_path / "r.pt")
    assert status == 0 and torch.load(tmp_path / "r.pt").shape == (6, 1, 28, 28)

    status, out, _ = run_cli(capsys, "encode", run_dir)
    codes = np.load(run_dir / "codes-val.npz")
    assert status == 0 and codes["codes"].shape == (500, 3) and codes["labels"].shape == (500,)


def test_resume_from_the_cli_continues_to_the_new_epoch_count(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_cli(capsys, "train", "vae", "--epochs", "1", "--out", run_dir, "--quiet")
    status, out, _ = run_cli(capsys, "train", "vae", "--epochs", "2", "--out", run_dir, "--resume")
    assert status == 0 and "resuming" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2


def test_models_lists_the_three_presets(capsys):
    status, out, _ = run_cli(capsys, "models")
    assert status == 0
    assert "219,891" in out and "5,729" in out and "652,824" in out


def test_models_shows_a_variants_own_defaults(capsys):
    status, out, _ = run_cli(capsys, "models")
    beta = out[out.index("beta-vae") : out.index("\niwae")]
    iwae = out[out.index("\niwae") : out.index("conv-vae")]
    assert status == 0 and "kl_weight = 4.0" in beta and "importance_samples = 5" in iwae


def test_a_variant_preset_trains_and_its_run_remembers_it(capsys, tmp_path):
    run_dir = tmp_path / "beta"
    status, _, _ = run_cli(
        capsys, "train", "beta-vae", "--epochs", "1", "--out", run_dir, "--quiet"
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert status == 0 and config["model"] == "beta-vae"
    assert config["model_config"]["kl_weight"] == 4.0
    status, _, _ = run_cli(capsys, "sample", run_dir, "-n", "4", "--out", tmp_path / "s.npy")
    assert status == 0 and np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "vea"], "unknown model 'vea' (did you mean 'vae'?)"),
        (["train", "ae", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'?"),
        (["train", "ae", "--option", "latent_dim=0"], "option 'latent_dim' must be at least 1"),
        (["train", "ae", "--option", "depth=3"], "unknown AEConfig option 'depth'"),
        (["sample", "no-such-run"], "no-such-run is not a folder"),
        (["train", "ae", "--resume"], "--resume needs --out"),
    ],
)
def test_user_mistakes_get_one_line_and_status_2(capsys, argv, message):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aegen: error: ") and message in lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "ae", "--epochs", "0"],
        ["train", "ae", "--lr", "x"],
        ["train", "ae", "--lr", "nan"],
        ["frobnicate"],
    ],
)
def test_bad_option_values_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_data_offline_names_the_file(capsys, tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    status, _, err = run_cli(
        capsys,
        "train",
        "ae",
        "--dataset",
        "fashion-mnist",
        "--data-root",
        tmp_path,
        "--out",
        tmp_path / "run",
    )
    assert status == 2 and "train-images-idx3-ubyte.gz is missing" in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is there


def test_unwritable_output_is_reported_before_training(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, out, err = run_cli(capsys, "train", "ae", "--out", blocker / "run")
    assert status == 2 and "cannot write the run folder" in err and "epoch 1" not in out


def test_unknown_output_format_is_refused_before_work(capsys, trained_runs, tmp_path):
    status, _, err = run_cli(
        capsys, "sample", trained_runs["vae"].run_dir, "--out", tmp_path / "x.gif"
    )
    assert status == 2 and "choose a name ending in .png, .npy, .pt" in err


def test_sample_with_the_same_seed_is_repeatable(capsys, trained_runs, tmp_path):
    run_dir = trained_runs["vae"].run_dir
    run_cli(capsys, "sample", run_dir, "-n", "8", "--seed", "3", "--out", tmp_path / "a.npy")
    run_cli(capsys, "sample", run_dir, "-n", "8", "--seed", "3", "--out", tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_encode_test_split_uses_the_data_sets_test_images(capsys, trained_runs, shared_data):
    run_dir = trained_runs["vae"].run_dir
    status, _, _ = run_cli(capsys, "encode", run_dir, "--split", "test", "--data-root", shared_data)
    codes = np.load(run_dir / "codes-test.npz")
    assert status == 0 and codes["codes"].shape == (10000, 20)
    assert np.array_equal(
        codes["labels"], load_dataset("mnist", "test", shared_data).labels.numpy()
    )


def test_console_entry_point_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "aegen", "train", "vea"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == "aegen: error: unknown model 'vea' (did you mean 'vae'?); choose one of ae, conv-ae, "
        "vae, beta-vae, iwae, conv-vae, cvae, vae-gan, rae, wae, aae, vamp, vq-vae, ldm"
    )
