"""Every writer of a run folder takes its lock: `train` and `evaluate` exclusively, the commands
that add derived files into the folder (`sample`, `pictures`, `score`, `export`, `report`,
`encode`, `reconstruct`) shared. A writer that cannot have it is refused in one line naming the
holder, and no writer removes a temporary file of a live process; those of dead ones go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aegen.cli import main
from aegen.runs.lock import RunFolderLock, orphan_files
from aegen.scoring import evaluate as evaluate_module


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    assert main(["train", "ae", "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    return run


def refused(capsys, argv: list[str]) -> str:
    """The one line a refused command prints (it must exit 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "being written by another aegen process" in err, err
    return err


def test_a_resume_beside_a_running_evaluation_is_refused_and_its_files_stay(
    capsys, run_dir, monkeypatch
):
    seen = {}

    def scoring(trained, *args, **kwargs):  # evaluate's work, with a temporary file of its own
        mine = run_dir / f".scores.json.{os.getpid()}.x1y2.tmp"
        mine.write_bytes(b"half of scores.json")
        seen["resume"] = main(["train", "ae", "--epochs", "2", "--out", str(run_dir), "--resume"])
        seen["err"] = capsys.readouterr().err
        seen["kept"] = mine.exists()
        mine.unlink()
        return {}

    monkeypatch.setattr(evaluate_module, "score_run", scoring)
    evaluate_module.evaluate(run_dir)
    assert seen["resume"] == 2 and f"(PID {os.getpid()})" in seen["err"]
    assert seen["kept"]


def test_shared_writers_are_refused_while_a_training_holds_the_folder(capsys, run_dir, tmp_path):
    with RunFolderLock(run_dir):
        err = refused(capsys, ["pictures", str(run_dir)])
        assert f"PID {os.getpid()}" in err
        refused(capsys, ["sample", str(run_dir), "-n", "4", "--sampler", "gmm"])
        refused(capsys, ["export", str(run_dir), "--part", "decoder", "--format", "torchscript"])
        refused(capsys, ["encode", str(run_dir)])
        refused(capsys, ["reconstruct", str(run_dir), "-n", "4"])
        # Files written elsewhere need no lock.
        assert main(["export", str(run_dir), "--part", "decoder", "--format", "torchscript",
                     "--out", str(tmp_path / "decoder.pt")]) == 0  # fmt: skip
        assert main(["encode", str(run_dir), "--out", str(tmp_path / "codes.npz")]) == 0
        assert main(["reconstruct", str(run_dir), "--out", str(tmp_path / "r.png")]) == 0
        # A sampler with nothing to fit, or fitted already, draws elsewhere beside the writer;
        # one whose fit would be kept in the folder waits for it.
        for sampler in ("prior", "gmm"):
            elsewhere = ["--out", str(tmp_path / f"{sampler}.png")]
            assert main(["sample", str(run_dir), "--sampler", sampler, *elsewhere]) == 0
        refused(capsys, ["sample", str(run_dir), "--sampler", "gmm-3", "--out", "x.png"])
    assert not list(run_dir.glob("codes-*")) and not list(run_dir.glob("reconstructions-*"))


def test_shared_writers_write_together_and_keep_out_exclusive_ones(capsys, run_dir):
    with RunFolderLock(run_dir, shared=True):
        assert main(["pictures", str(run_dir)]) == 0
        assert main(["sample", str(run_dir), "-n", "4", "--sampler", "gmm"]) == 0
        capsys.readouterr()
        refused(capsys, ["train", "ae", "--epochs", "2", "--out", str(run_dir), "--resume"])
        refused(capsys, ["evaluate", str(run_dir)])
    assert (run_dir / "sampler-gmm.safetensors").is_file()


def dead_pid() -> int:
    """The PID of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("writer", ["pictures", "resume"])
def test_every_writer_removes_dead_writers_files_and_keeps_live_ones(capsys, run_dir, writer):
    dead = run_dir / f".scores.json.{dead_pid()}.k3j4.tmp"
    old = run_dir / ".sampler-gmm.safetensors.abc123.tmp"  # an older aegen's: no PID
    live = run_dir / f".scores.json.{os.getpid()}.m5n6.tmp"
    for path in (dead, old, live):
        path.write_bytes(b"half a file")
    argv = {
        "pictures": ["pictures", str(run_dir)],
        "resume": ["train", "ae", "--epochs", "2", "--quiet", "--out", str(run_dir), "--resume"],
    }[writer]
    assert main(argv) == 0
    assert not dead.exists() and not old.exists() and live.exists()
    assert orphan_files(run_dir) == []


def test_a_killed_holder_of_the_shared_lock_leaves_nothing_in_the_way(run_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from aegen.runs.lock import RunFolderLock\n"
            f"with RunFolderLock({str(run_dir)!r}, shared=True):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    assert main(["train", "ae", "--epochs", "2", "--quiet", "--out", str(run_dir), "--resume"]) == 0
