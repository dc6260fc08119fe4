"""Fault injection: a run killed at any write point, or at a random step, and then resumed ends
exactly where an uninterrupted run ends; SIGINT and SIGTERM stop with one line and resume the
same way; one writer per run folder.

Each trial is a real `aegen train` process whose atomic writes (aegen.files.atomic) report every
write point: a temporary file made, a file or folder fsynced, a file renamed into place. The
process kills itself at the N-th point (or at a training step), the run is then recovered as a
user would (`--resume`, or the same command again when not even config.json was written), and
the folder is compared with an uninterrupted run's: weights, best weights, checkpoint tensors,
history (all but the seconds), config, and the list of files. The run is a VAE with every
training control on (a cosine schedule, clipping, a KL warm-up, early stopping), so that their
resume is checked too. The quick tier takes a spread of points; the slow tier every one of them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aegen.cli import main
from aegen.errors import RunError
from aegen.files.tensors import load_tensors
from aegen.runs.lock import RunFolderLock

RUN = [
    "train",
    "vae",
    "--epochs",
    "3",
    "--val-fraction",
    "0.5",
    "--device",
    "cpu",
    "--quiet",
    *("--lr-schedule", "cosine", "--clip-grad", "1", "--kl-warmup", "2", "--early-stop", "2"),
]
WRITES_PER_EPOCH = 4  # checkpoint, weights, best weights (each epoch of this run is best), history
POINTS_PER_WRITE = 4  # temporary file made, file fsynced, renamed, folder fsynced

TRIAL = r"""
import os, signal, sys, tempfile
from aegen.files import atomic
from aegen.training import trainer

kill_at, step_at = int(os.environ["KILL_AT"]), int(os.environ["KILL_AT_STEP"])
sig = int(os.environ["KILL_SIGNAL"])
points = steps = 0

def point():
    global points
    points += 1
    if points == kill_at:
        os.kill(os.getpid(), sig)

class CountingOS:
    def __getattr__(self, name):
        return getattr(os, name)
    def fsync(self, fd):
        os.fsync(fd); point()
    def replace(self, source, target):
        os.replace(source, target); point()

class CountingTempfile:
    def __getattr__(self, name):
        return getattr(tempfile, name)
    def mkstemp(self, *args, **kwargs):
        made = tempfile.mkstemp(*args, **kwargs); point(); return made

atomic.os, atomic.tempfile = CountingOS(), CountingTempfile()
plain_step = trainer.Trainer._step

def counted_step(self, index):
    global steps
    steps += 1
    if steps == step_at:
        os.kill(os.getpid(), sig)
    return plain_step(self, index)

trainer.Trainer._step = counted_step
from aegen.cli import main
status = main(sys.argv[1:])
print(f"write points: {points}, steps: {steps}", file=sys.stderr)
sys.exit(status)
"""


def aegen(
    run_dir: Path,
    *extra: str,
    kill_at: int = 0,
    step_at: int = 0,
    sig: int = signal.SIGKILL,
    run: tuple[str, ...] = tuple(RUN),
) -> subprocess.CompletedProcess:
    """One `aegen train` process (one thread, so every run computes the same floats)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "KILL_AT": str(kill_at),
        "KILL_AT_STEP": str(step_at),
        "KILL_SIGNAL": str(int(sig)),
    }
    return subprocess.run(
        [sys.executable, "-c", TRIAL, *run, "--out", str(run_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        # As from a terminal: a test suite started in the background by a non-interactive shell
        # (a CI script's `&`) has SIGINT ignored, and Python then never turns it into Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def recover(run_dir: Path, run: tuple[str, ...] = tuple(RUN)) -> subprocess.CompletedProcess:
    """What a user does after a crash: resume, or start again if no config.json was written."""
    resume = ("--resume",) if (run_dir / "config.json").is_file() else ()
    return aegen(run_dir, *resume, run=run)


def snapshot(run_dir: Path) -> dict:
    """Everything that must agree with an uninterrupted run (timings left out)."""
    weights = load_tensors(run_dir / "model.safetensors")[0]
    best, best_metadata = load_tensors(run_dir / "model-best.safetensors")
    checkpoint, metadata = load_tensors(run_dir / "checkpoint.safetensors")
    untimed = [
        {k: v for k, v in m.items() if k != "seconds"} for m in json.loads(metadata["history"])
    ]
    history = [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (run_dir / "history.jsonl").read_text().splitlines()
    ]
    return {
        "files": sorted(p.name for p in run_dir.iterdir()),
        "weights": {k: v.numpy().tobytes() for k, v in weights.items()},
        "best": {k: v.numpy().tobytes() for k, v in best.items()},
        "best_epoch": best_metadata["epoch"],
        "checkpoint": {k: v.numpy().tobytes() for k, v in checkpoint.items()},
        "epoch": metadata["epoch"],
        "checkpoint_history": untimed,
        "history": history,
        "config": json.loads((run_dir / "config.json").read_text()),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, int, int]:
    """An uninterrupted run: its snapshot, and how many write points and steps it has."""
    return uninterrupted(tmp_path_factory.mktemp("reference") / "run", tuple(RUN))


def uninterrupted(run_dir: Path, run: tuple[str, ...]) -> tuple[dict, int, int]:
    done = aegen(run_dir, run=run)
    assert done.returncode == 0, done.stderr
    counts = done.stderr.strip().splitlines()[-1]  # "write points: N, steps: S"
    points, steps = (int(part.split(": ")[1]) for part in counts.split(", "))
    return snapshot(run_dir), points, steps


def kill_then_recover(
    run_dir: Path, run: tuple[str, ...], **fault
) -> tuple[subprocess.CompletedProcess, dict]:
    killed = aegen(run_dir, **fault, run=run)
    recovered = recover(run_dir, run)
    assert recovered.returncode == 0, recovered.stderr
    return killed, snapshot(run_dir)


def quick_points(points: int) -> list[int]:
    """A spread of write points: config.json's temporary file, each point of the first
    epoch's checkpoint, the last epoch's weights renamed, and the diagnosis (the last file)
    in place."""
    first_checkpoint = POINTS_PER_WRITE + 1
    per_epoch = WRITES_PER_EPOCH * POINTS_PER_WRITE
    last_weights_renamed = first_checkpoint + 2 * per_epoch + POINTS_PER_WRITE + 2
    return [
        1,
        *range(first_checkpoint, first_checkpoint + POINTS_PER_WRITE),
        last_weights_renamed,
        points,
    ]


def check_every(
    tmp_path: Path,
    reference: tuple[dict, int, int],
    faults: list[dict],
    run: tuple[str, ...] = tuple(RUN),
) -> None:
    """Run the trials two at a time and require each recovered folder to equal the reference."""
    expected = reference[0]

    def trial(index_fault: tuple[int, dict]) -> str | None:
        index, fault = index_fault
        killed, got = kill_then_recover(tmp_path / f"trial-{index}", run, **fault)
        if killed.returncode != -signal.SIGKILL:
            return f"{fault}: the process was not killed ({killed.returncode})"
        differing = [key for key in expected if got[key] != expected[key]]
        return f"{fault}: {differing} differ from the uninterrupted run" if differing else None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(trial, enumerate(faults)) if f]
    assert not failures, "\n".join(failures)


def test_the_write_points_are_where_the_protocol_says(reference):
    _, points, steps = reference
    epochs_and_config = (1 + 3 * WRITES_PER_EPOCH) * POINTS_PER_WRITE
    # + five pictures, the samples of the prior and of the mixture (whose fit is saved), and
    # the diagnosis
    assert points == epochs_and_config + 9 * POINTS_PER_WRITE
    assert steps == 3 * 20  # 2,500 training images in batches of 128


def random_steps(steps: int, count: int, seed: int) -> list[dict]:
    return [{"step_at": s} for s in random.Random(seed).sample(range(1, steps + 1), count)]


def test_a_kill_at_a_spread_of_write_points_and_steps_converges(tmp_path, reference):
    _, points, steps = reference
    faults = [{"kill_at": p} for p in quick_points(points)] + random_steps(steps, 1, seed=0)
    check_every(tmp_path, reference, faults)


@pytest.mark.slow
def test_a_kill_at_every_write_point_and_random_steps_converges(tmp_path, reference):
    """Every write point of the run (config, first, middle and last epoch, sampler, pictures)."""
    _, points, steps = reference
    faults = [{"kill_at": p} for p in range(1, points + 1)] + random_steps(steps, 6, seed=1)
    check_every(tmp_path, reference, faults)


SIGNAL_TRIALS = [
    (signal.SIGINT, 130, {"step_at": 10}),
    (signal.SIGTERM, 143, {"step_at": 45}),
    (signal.SIGINT, 130, {"kill_at": 19}),
    (signal.SIGTERM, 143, {"kill_at": 7}),
]


@pytest.mark.parametrize("sig, status, where", SIGNAL_TRIALS)
def test_sigint_and_sigterm_stop_with_one_line_and_resume(tmp_path, reference, sig, status, where):
    stopped = aegen(tmp_path / "run", **where, sig=sig)
    lines = [line for line in stopped.stderr.splitlines() if not line.startswith("write points")]
    assert stopped.returncode == status and len(lines) == 1, stopped.stderr
    assert lines[0].startswith("aegen: interrupted")
    if where.get("step_at") == 10:  # inside epoch 1: nothing is kept, and it says so
        assert "no epoch had finished" in lines[0]
    elif where.get("step_at") == 45:
        assert "keeps epochs 1-2" in lines[0]
    assert not list((tmp_path / "run").glob(".*.tmp"))  # the interrupted write cleaned up
    recovered = recover(tmp_path / "run")
    assert recovered.returncode == 0, recovered.stderr
    assert snapshot(tmp_path / "run") == reference[0]


def test_a_second_writer_is_refused_with_the_holders_pid(capsys, tmp_path):
    run_dir = tmp_path / "run"
    with RunFolderLock(run_dir):
        for argv in (
            ["train", "ae", "--out", str(run_dir)],
            ["train", "ae", "--out", str(run_dir), "--resume"],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert (
                len(err) == 1
                and f"being written by another aegen process (PID {os.getpid()})" in err[0]
            )
    assert not (run_dir / ".lock").exists()


def test_a_stale_lock_of_a_killed_writer_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from aegen.runs.lock import RunFolderLock\n"
            f"with RunFolderLock({str(run_dir)!r}):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (run_dir / ".lock").exists()  # killed: the file stays, its flock does not
    (run_dir / ".config.json.abc.tmp").write_bytes(b"half a file")  # what a kill leaves
    assert main(["train", "ae", "--epochs", "1", "--out", str(run_dir), "--quiet"]) == 0
    assert not list(run_dir.glob(".*"))  # lock released, orphan removed


def test_two_trainings_into_one_folder_the_second_is_refused_while_the_first_runs(capsys, tmp_path):
    """Two real processes: the live writer keeps the folder; `--out` and `--resume` beside it
    are refused with its PID, and the folder is the first run's alone."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "aegen", *RUN[:3], "200", *RUN[4:], "--out", str(run_dir)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.safetensors").exists():  # the first is training
            assert time.monotonic() < deadline and first.poll() is None, first.stderr
            time.sleep(0.2)
        for extra in ([], ["--resume"]):
            assert main([*RUN, "--seed", "7", "--out", str(run_dir), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"(PID {first.pid})" in err[0]
        assert json.loads((run_dir / "config.json").read_text())["train"]["seed"] == 0
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 143 and "keeps epoch" in first.stderr.read()


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, epoch", [(signal.SIGINT, 130, 2), (signal.SIGTERM, 143, 3)])
def test_a_signal_at_every_write_point_of_an_epoch_stops_in_one_line_and_converges(
    tmp_path, reference, sig, status, epoch
):
    """Ctrl-C or SIGTERM at each write point of one epoch's commit: checkpoint, weights, best
    weights, history."""
    first = POINTS_PER_WRITE + 1 + (epoch - 1) * WRITES_PER_EPOCH * POINTS_PER_WRITE
    points = range(first, first + WRITES_PER_EPOCH * POINTS_PER_WRITE)

    def trial(point: int) -> str | None:
        run_dir = tmp_path / f"point-{point}"
        stopped = aegen(run_dir, kill_at=point, sig=sig)
        lines = [
            line for line in stopped.stderr.splitlines() if not line.startswith("write points")
        ]
        if stopped.returncode != status or len(lines) != 1 or "interrupted" not in lines[0]:
            return f"point {point}: exit {stopped.returncode}, {stopped.stderr!r}"
        recovered = recover(run_dir)
        if recovered.returncode != 0 or snapshot(run_dir) != reference[0]:
            return f"point {point}: the recovered folder differs ({recovered.stderr!r})"
        return None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(trial, points) if f]
    assert not failures, "\n".join(failures)


def test_a_lock_file_planted_as_a_symlink_is_not_followed(tmp_path):
    run_dir, target = tmp_path / "run", tmp_path / "precious"
    run_dir.mkdir()
    target.write_text("keep me")
    (run_dir / ".lock").symlink_to(target)
    with pytest.raises(RunError, match="cannot write .*lock"):
        with RunFolderLock(run_dir):
            pass
    assert target.read_text() == "keep me"


@pytest.fixture(scope="module")
def ldm_run(tmp_path_factory) -> tuple[str, ...]:
    """ldm on 800 labelled digits: two epochs of its autoencoder stage, then two of its prior
    (a fixed switch), with narrow convolutions so that a trial takes seconds."""
    import numpy as np

    from aegen.data.datasets import load_dataset

    digits = load_dataset("mnist-5k", "train")
    data = tmp_path_factory.mktemp("ldm-data") / "digits.npz"
    np.savez(data, images=digits.images[:800].numpy(), labels=digits.labels[:800].numpy())
    options = ("stage_switch=fixed", "prior_share=0.5", "hidden_channels=[8,16]")
    return (
        *("train", "ldm", "--dataset", str(data), "--epochs", "4", "--val-fraction", "0.25"),
        *("--device", "cpu", "--quiet"),
        *(arg for option in options for arg in ("--option", option)),
    )


@pytest.mark.slow
def test_ldm_killed_in_either_stage_resumes_to_the_uninterrupted_run(tmp_path, ldm_run):
    """Both of ldm's stages: kills at the config, in the autoencoder stage's first commit, at the
    switch to the prior (epoch 3's commit), in the prior's last commit and at the last file,
    and at random steps of each stage."""
    reference = uninterrupted(tmp_path / "reference", ldm_run)
    _, points, steps = reference
    per_epoch = WRITES_PER_EPOCH * POINTS_PER_WRITE
    first_commit = POINTS_PER_WRITE + 1
    switch_commit = first_commit + 2 * per_epoch
    kills = [1, first_commit, first_commit + 6, switch_commit + 3, switch_commit + 9]
    kills += [first_commit + 3 * per_epoch + 5, points]
    half = steps // 2  # the autoencoder's steps, then the prior's
    faults = [{"kill_at": p} for p in kills]
    faults += [{"step_at": s} for s in (1 + half // 2, half + 1, half + half // 2 + 1)]
    check_every(tmp_path, reference, faults, ldm_run)
