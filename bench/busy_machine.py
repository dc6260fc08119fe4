"""Training speed on a busy machine: aegen's thread tuner against a pinned count and pythae.

    .venv/bin/python bench/busy_machine.py --data-root ../shared/data [--repeats 2] [--json F]

Beside 0, 1 and 2 busy processes (each a pure-Python loop: what a browser tab, an indexer or a
second job looks like to the scheduler), one `aegen train` process per measurement:
- vae: the VAE 784-400-20 on full Fashion-MNIST (60,000 images, batch 128), 2 epochs;
- ae: the 3-d autoencoder on mnist-5k, 20 epochs (0.1-0.3 s each: the tuner's windows of 0.5 s
  span epochs);
each with the default thread choice (`auto`: the tuner), `--threads 2` (torch's default on this
2-core machine, what aegen did before the tuner) and `--threads 1`; and pythae 0.1.2's VAE on
the same data (its own default threads), when bench/setup_peers.sh made its venv.
An epoch's time: the median of the epochs after the first in aegen's history.jsonl (its
training steps and a validation pass on 1 held-out image; the first pays for warming up; the
tuner's tries and the epochs before it leaves a slow count are in the median); pythae's: its
1-epoch training time (TrainingPipeline, start-up excluded).
Loads and variants are interleaved, the best of the repeats is kept; a run that takes longer
than --timeout seconds is stopped and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHAE = Path(os.environ.get("PYTHAE_PYTHON", HERE / ".venv-pythae" / "bin" / "python"))
VARIANTS = ("auto", "threads 2", "threads 1")
BUSY = "while True:\n    pass\n"


def aegen_epoch(model: str, variant: str, data_root: Path, work: Path, timeout: float) -> float:
    data = ["--dataset", "fashion-mnist", "--data-root", str(data_root), "--epochs", "2"]
    if model == "ae":
        data = ["--dataset", "mnist-5k", "--epochs", "20"]
    pin = [] if variant == "auto" else ["--threads", variant.split()[1]]
    out = Path(tempfile.mkdtemp(dir=work))
    argv = [sys.executable, "-m", "aegen", "train", model, *data, *pin]
    argv += ["--val-fraction", "0.00001", "--device", "cpu", "--quiet", "--out", str(out / "run")]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run(argv, check=True, timeout=timeout, env=env, stdout=subprocess.DEVNULL)
    lines = (out / "run" / "history.jsonl").read_text().splitlines()
    return statistics.median(json.loads(line)["seconds"] for line in lines[1:])


def pythae_epoch(data_root: Path, timeout: float) -> float:
    argv = [str(PYTHAE), str(HERE / "peers" / "pythae_vae.py"), "train", "--epochs", "1"]
    argv += ["--data-root", str(data_root)]
    done = subprocess.run(argv, check=True, timeout=timeout, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--json", type=Path, default=HERE / "busy-machine-cpu.json")
    args = parser.parse_args()
    peers = PYTHAE.exists()
    rows = [(m, v) for m in ("vae", "ae") for v in VARIANTS] + ([("vae", "pythae")] * peers)
    results: dict[str, dict[str, float | None]] = {f"{m} {v}": {} for m, v in rows}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            for load in (0, 1, 2):
                busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
                time.sleep(0.5)
                try:
                    for model, variant in rows:
                        try:
                            if variant == "pythae":
                                seconds = pythae_epoch(args.data_root, args.timeout)
                            else:
                                seconds = aegen_epoch(
                                    model, variant, args.data_root, Path(work), args.timeout
                                )
                        except subprocess.TimeoutExpired:
                            seconds = None
                        entry = results[f"{model} {variant}"]
                        best = entry.get(str(load))
                        if seconds is not None and (best is None or seconds < best):
                            entry[str(load)] = seconds
                        else:
                            entry.setdefault(str(load), best)
                        shown = "timeout" if seconds is None else f"{seconds:.2f}s"
                        print(f"repeat {repeat + 1}, {load} busy: {model} {variant}: {shown}")
                finally:
                    for process in busy:
                        process.kill()
                        process.wait()
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)


def print_table(results: dict) -> None:
    def cell(value: float | None) -> str:
        return "timeout" if value is None else f"{value:.2f}"

    print("\n| epoch seconds | alone | beside 1 busy | beside 2 busy |")
    print("|---|---:|---:|---:|")
    for name, entry in results.items():
        print(f"| {name} | {' | '.join(cell(entry.get(str(n))) for n in (0, 1, 2))} |")


if __name__ == "__main__":
    main()
