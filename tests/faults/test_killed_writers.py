"""The writers beside `train` killed mid-way (SIGKILL): `evaluate`, `sample --sampler flow` (a
learned sampler's fit) and `report`. The folder still opens, nothing of the killed writer is
left once the next writer has run, and the same command then succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aegen.cli import main
from aegen.data.datasets import load_dataset
from aegen.runs.folder import read_scores
from aegen.trained import load

COMMANDS = {
    "evaluate": lambda run: ["evaluate", str(run)],
    "sample-flow": lambda run: ["sample", str(run), "--sampler", "flow", "-n", "16"],
    "report": lambda run: ["report", str(run)],
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """An ae trained on 300 digits saved as an unlabelled array: evaluated with no judge to train
    and no test split to read, so that a kill lands in the scoring itself."""
    root = tmp_path_factory.mktemp("killed-writers")
    digits = load_dataset("mnist-5k", "train").images[:300].numpy()
    np.save(root / "digits.npy", digits)
    run = root / "run"
    argv = ["train", "ae", "--dataset", str(root / "digits.npy"), "--epochs", "2", "--quiet"]
    assert main([*argv, "--out", str(run)]) == 0
    return run


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.8, 2.5, 6.0])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_killed_writer_leaves_a_folder_that_opens_and_the_next_call_works(
    trained_run, tmp_path, command, after
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    argv = COMMANDS[command](run)
    writer = subprocess.Popen(
        [sys.executable, "-m", "aegen", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + after
    while writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.kill()
    writer.wait()
    assert load(run).sample(4).shape == (4, 1, 28, 28)  # the folder opens
    if (run / "scores.json").exists():
        read_scores(run)  # whole, or not there at all
    assert main(argv) == 0  # the next call works ...
    leftovers = [p.name for p in run.glob(".*.tmp")]
    assert leftovers == [], leftovers  # ... and no temporary file of the killed writer stays
    assert not (run / ".lock").exists()
