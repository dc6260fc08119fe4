"""Where a whole run's fixed cost goes: a 1-epoch `aegen train` taken apart by phase.

    .venv/bin/python bench/startup.py --data-root ../shared/data [--repeats 3] [--json FILE]

Each repeat is a fresh process that imports torch and aegen, then runs aegen.train (the VAE on
Fashion-MNIST, 1 epoch, as bench/train_speed.py's "run 1") with timers wrapped around its phases:
reading the data, building the optimizers, the epoch and its held-out loss, writing checkpoints
and weights, drawing the run folder's pictures. It also says which heavy modules the run
imported: torch.optim imports torch._dynamo (torch's compiler stack, 1.3 s here) when an
optimizer is built, and torchvision imports it too; aegen's training path uses neither since
its own Adam and image grids (issue #20). The
parent times the whole process; "interpreter and the rest" is what no phase accounts for. The
best of the repeats is kept per phase. Each repeat runs twice, alternating: ending as the `aegen`
command does (the garbage collector frozen first, cli.run) and with the interpreter's own exit,
whose final collections over torch's objects are most of "interpreter and the rest". pythae (bench/setup_peers.sh) pays the same torch and
torch.optim imports: with both epochs fast, these fixed seconds bound any whole-run ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import functools, json, sys, tempfile, time
phases = {}

def timed(name, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
    return wrapper

started = time.perf_counter()
import torch
phases["import torch"] = time.perf_counter() - started
started = time.perf_counter()
from aegen.runs import run as run_folder
from aegen.training import run as pipeline
phases["import aegen"] = time.perf_counter() - started
# Each module calls a phase by the name it imported, so the timers wrap those names.
pipeline.load_dataset = timed("read and verify the data", pipeline.load_dataset)
from aegen.training import trainer
trainer.FusedAdam.__init__ = timed("build the optimizers", trainer.FusedAdam.__init__)
pipeline.Trainer.fit = timed("epoch + held-out loss + writes", pipeline.Trainer.fit)
for name in ("save_checkpoint", "save_weights", "write_history"):
    setattr(run_folder, name, timed("checkpoint, weights, metrics", getattr(run_folder, name)))
pipeline.write_run_pictures = timed("pictures", pipeline.write_run_pictures)
pipeline.diagnose = timed("diagnosis", pipeline.diagnose)
with tempfile.TemporaryDirectory() as out:
    pipeline.train("vae", "fashion-mnist", epochs=1, val_fraction=0.00001, device="cpu",
                   data_root=sys.argv[1], out=out + "/run", progress=False)
phases["epoch + held-out loss"] = (phases.pop("epoch + held-out loss + writes")
                                   - phases["checkpoint, weights, metrics"])
heavy = ("torch._dynamo", "torchvision", "matplotlib", "sklearn", "scipy")
print(json.dumps({"phases": phases, "imported": [m for m in heavy if m in sys.modules]}))
if sys.argv[2] == "frozen":  # as the aegen command ends (cli.run)
    import gc
    gc.freeze()
"""
EXITS = ("frozen", "plain")  # the aegen command's exit (gc frozen), and the interpreter's own


def one_process(data_root: Path, exit: str) -> tuple[dict[str, float], list[str]]:
    """The phases' seconds of one fresh process, and the heavy modules it imported."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_root), exit],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    phases = found["phases"]
    phases["whole process"] = time.perf_counter() - started
    phases["interpreter and the rest"] = phases["whole process"] - sum(
        v for k, v in phases.items() if k != "whole process"
    )
    return phases, found["imported"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path(os.environ.get("AEGEN_DATA", "../shared/data"))
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "startup-cpu.json")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {exit: [] for exit in EXITS}
    for _ in range(args.repeats):  # the two exits alternate
        for exit in EXITS:
            phases, imported = one_process(args.data_root.resolve(), exit)
            runs[exit].append(phases)
    best = {
        exit: {name: min(run[name] for run in runs[exit]) for name in runs[exit][0]}
        for exit in EXITS
    }
    args.json.write_text(json.dumps({"best": best, "runs": runs, "imported": imported}, indent=2))
    print(f"| phase of a 1-epoch VAE run (best of {args.repeats}) | {' | '.join(EXITS)} |")
    print("|---|---:|---:|")
    for name in best[EXITS[0]]:
        print(f"| {name} | {' | '.join(f'{best[exit][name]:.2f}' for exit in EXITS)} |")
    print(f"heavy modules the run imported: {', '.join(imported) or 'none'}")


if __name__ == "__main__":
    main()
