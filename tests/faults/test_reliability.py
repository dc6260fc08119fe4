"""Nothing lost, nothing executed, every bad input answered in one line (exit status 2)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegen.cli import main
from aegen.files.tensors import load_tensors


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def aegen_process(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "aegen", *map(str, argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    args = [
        "train",
        "vae",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.5",
        "--quiet",
    ]
    whole = aegen_process(*args, "--out", tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    killed = aegen_process(*args, "--out", tmp_path / "killed")
    metrics = tmp_path / "killed" / "history.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()
        time.sleep(0.02)
    time.sleep(0.2)  # into epoch 2 (an epoch here is 282 steps)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert metrics.read_text().count("\n") < 3, "the run finished before it could be killed"
    resumed = subprocess.run(
        [sys.executable, "-m", "aegen", *args, "--out", tmp_path / "killed", "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a = load_tensors(tmp_path / "whole" / "model.safetensors")[0]
    b = load_tensors(tmp_path / "killed" / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_epoch_step_and_cause_and_keeps_the_checkpoint(
    capsys, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", "ae", "--epochs", "1", "--out", run_dir, "--quiet")[0] == 0
    kept = {
        name: (run_dir / name).read_bytes()
        for name in ("checkpoint.safetensors", "model.safetensors", "history.jsonl")
    }

    from aegen.models.ae import FullyConnectedAE

    real_loss = FullyConnectedAE.loss

    def poisoned(self, x, labels=None):
        out = real_loss(self, x, labels)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(FullyConnectedAE, "loss", poisoned)
    status, _, err = cli(capsys, "train", "ae", "--epochs", "2", "--out", run_dir, "--resume")
    assert status == 2
    assert (
        "the loss became nan at epoch 2, step 1; the learning rate (0.001) is probably "
        "too high" in err
    )
    assert all((run_dir / name).read_bytes() == payload for name, payload in kept.items())


def test_a_malicious_pickle_as_checkpoint_is_refused_and_never_runs(
    capsys, tmp_path, malicious_pickle
):
    run_dir = tmp_path / "run"
    cli(capsys, "train", "ae", "--epochs", "1", "--out", run_dir, "--quiet")
    target = tmp_path / "pwned"
    (run_dir / "checkpoint.safetensors").write_bytes(malicious_pickle(target))
    status, _, err = cli(capsys, "train", "ae", "--epochs", "2", "--out", run_dir, "--resume")
    assert status == 2 and "checkpoint.safetensors is not a safetensors file" in err
    assert not target.exists()


def test_a_truncated_checkpoint_is_refused(capsys, tmp_path):
    run_dir = tmp_path / "run"
    cli(capsys, "train", "vae", "--epochs", "1", "--out", run_dir, "--quiet")
    path = run_dir / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    status, _, err = cli(capsys, "train", "vae", "--epochs", "2", "--out", run_dir, "--resume")
    assert status == 2 and "not a safetensors file" in err


def test_config_file_settings_apply_and_flags_win(capsys, tmp_path):
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps({"epochs": 1, "lr": 0.002, "seed": 7, "model_options": {"latent_dim": 2}})
    )
    run_dir = tmp_path / "run"
    status, _, _ = cli(
        capsys, "train", "vae", "--config", config, "--seed", "8", "--out", run_dir, "--quiet"
    )
    saved = json.loads((run_dir / "config.json").read_text())
    assert status == 0 and saved["train"]["lr"] == 0.002 and saved["train"]["seed"] == 8
    assert saved["model_config"]["latent_dim"] == 2 and saved["train"]["epochs"] == 1


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"epoch": 3}', "unknown setting 'epoch' (did you mean 'epochs'?)"),
        ('{"epochs": "ten"}', "option 'epochs' must be an integer"),
        ('{"lr": -1}', "learning rate must be a positive number"),
        ('{"model_options": {"latent": 2}}', "unknown AEConfig option 'latent'"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"epochs": 3', "is not valid JSON"),
    ],
)
def test_bad_config_files_get_one_line(capsys, tmp_path, content, message):
    config = tmp_path / "settings.json"
    config.write_text(content)
    status, _, err = cli(capsys, "train", "ae", "--config", config, "--out", tmp_path / "run")
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


TOKENS = [
    "train",
    "sample",
    "reconstruct",
    "encode",
    "models",
    "ae",
    "vae",
    "conv-ae",
    "vea",
    "--epochs",
    "--lr",
    "--batch-size",
    "--seed",
    "--dataset",
    "mnist-5k",
    "mnist",
    "--option",
    "latent_dim=2",
    "hidden_dims=[4]",
    "--out",
    "run",
    "--resume",
    "--config",
    "settings.json",
    "--sampler",
    "gaussian",
    "-n",
    "--split",
    "test",
    "--data-root",
    "nowhere",
    "--quiet",
    "0",
    "-1",
    "1",
    "2",
    "1e-3",
    "nan",
    "inf",
    "x",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
SETTING_KEYS = st.sampled_from(
    [
        "dataset",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "seed",
        "val_fraction",
        "model_options",
        "data_root",
        "epoch",
    ]
) | st.text(max_size=6)


@pytest.fixture
def fast_training(monkeypatch, tmp_path):
    """Arguments are what is tested here: skip the epochs, the pictures and the diagnosis."""
    from aegen.training import run as training_run
    from aegen.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self, *args, **kwargs: [])
    monkeypatch.setattr(training_run, "write_run_pictures", lambda *args, **kwargs: None)
    monkeypatch.setattr(training_run, "diagnose", lambda *args: {"checks": {}, "findings": []})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def outcome(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=8))
def test_random_argument_lists_succeed_or_fail_cleanly(fast_training, capsys, argv):
    assert outcome(argv) in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.dictionaries(SETTING_KEYS, JSON, max_size=4), model=st.sampled_from(["ae", "vae"]))
def test_random_config_files_succeed_or_fail_cleanly(fast_training, capsys, values, model):
    config = fast_training / "settings.json"
    config.write_text(json.dumps(values))
    out = fast_training / f"run-{os.urandom(4).hex()}"
    assert outcome(["train", model, "--config", str(config), "--out", str(out), "--quiet"]) in (
        0,
        2,
    )
