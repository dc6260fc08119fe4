"""What `aegen evaluate` costs beside the training it scores (docs/guide/evaluating.md): real
MNIST test digits saved as JPEGs in class sub-folders (a user's own labelled folder), a model
trained on them with `aegen train MODEL --dataset FOLDER --epochs E`, then `aegen evaluate RUN`
with its defaults, each command timed as a user runs it (a fresh process, an empty cache, so
that the judge is trained as on a first evaluation).

    .venv/bin/python bench/evaluate_cost.py --sizes 500 2000 5000 --models conv-vae ldm
    .venv/bin/python bench/evaluate_cost.py --sizes 2000 --src /tmp/aegen-old/src --tag before

--src runs another checkout's aegen (the code before a change) with this venv. Prints one
table and writes bench/evaluate-cost-TAG-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "data"


def digit_folder(count: int, root: Path) -> Path:
    """The first `count` MNIST test digits as JPEG files in one sub-folder per class."""
    from aegen.data.datasets import load_dataset

    folder = root / f"mnist-jpeg-{count}"
    if folder.is_dir():
        return folder
    test = load_dataset("mnist", "test", os.environ.get("AEGEN_DATA", str(SHARED)))
    partial = folder.with_name(folder.name + ".partial")
    for index in range(count):
        label = int(test.labels[index])
        (partial / str(label)).mkdir(parents=True, exist_ok=True)
        pixels = test.images[index].numpy().astype(np.uint8)
        Image.fromarray(pixels).save(partial / str(label) / f"{index:05d}.jpg", quality=92)
    partial.rename(folder)
    return folder


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds a command took and what it printed; a failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr + done.stdout


def scores_by_count(run_dir: Path, cache: Path, counts: tuple[int, ...]) -> list[dict]:
    """FD and KID of the run's real training images against its reference, at several counts
    of the training images, in its judge's features (the judge evaluate cached)."""
    os.environ["AEGEN_CACHE"] = str(cache)
    from aegen.data.pixels import unit_images
    from aegen.scoring.quality import frechet_distance, kernel_distance
    from aegen.scoring.scores import classify, judge
    from aegen.training.run import load

    trained = load(run_dir)
    test, train = trained.split("test"), trained.split("train")
    net, _ = judge(trained, test, "reference")
    real, _ = classify(net, unit_images(test.images))
    features, _ = classify(net, unit_images(train.images))
    rows = []
    for n in counts:
        if n <= len(features):
            kid, error = kernel_distance(features[:n], real)
            rows.append(
                {
                    "n": n,
                    "fd": round(frechet_distance(features[:n], real), 2),
                    "kid": round(kid, 2),
                    "kid_se": round(error, 2),
                }
            )
    return rows


def measure(model: str, count: int, args: argparse.Namespace, work: Path) -> dict:
    folder = digit_folder(count, Path(args.data))
    cache = work / f"cache-{model}-{count}"  # each evaluation a first one: no judge cached yet
    env = {**os.environ, "AEGEN_CACHE": str(cache)}
    if args.src:
        env["PYTHONPATH"] = args.src
    aegen = [sys.executable, "-m", "aegen"]
    run_dir = work / f"{model}-{count}"
    train = [*aegen, "train", model, "--dataset", str(folder), "--epochs", str(args.epochs)]
    train_s, _ = timed([*train, "--out", str(run_dir)], env)
    evaluate_s, printed = timed([*aegen, "evaluate", str(run_dir)], env)
    scores = json.loads((run_dir / "scores.json").read_text())
    by_count = scores_by_count(run_dir, cache, (200, 500, 1000, 4000)) if not args.src else []
    row = {
        "model": model,
        "images": count,
        "epochs": args.epochs,
        "train_s": round(train_s, 1),
        "evaluate_s": round(evaluate_s, 1),
        "ratio": round(evaluate_s / train_s, 2),
        "samples_per_sampler": scores["protocol"].get("samples_per_sampler"),
        "judge": {
            key: scores["classifier"].get(key)
            for key in ("test_accuracy", "epochs", "images_seen", "seconds")
        },
        "nll": {
            key: scores.get("likelihood", {}).get("pixel_bce", {}).get(key)
            for key in ("k", "images")
        },
        "real_data_by_count": by_count,
        "printed": [line for line in printed.splitlines() if "\r" not in line][-40:],
    }
    print(
        f"{model:9s} {count:6d} {train_s:9.1f} {evaluate_s:11.1f} {row['ratio']:6.2f}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--models", nargs="+", default=["conv-vae", "ldm"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", default="/tmp/aegen-evaluate-cost", help="digit folders")
    parser.add_argument("--src", help="another checkout's src folder (the code before)")
    parser.add_argument("--tag", default="after")
    args = parser.parse_args()
    print(f"{'model':9s} {'images':>6s} {'train s':>9s} {'evaluate s':>11s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as work:
        rows = [
            measure(model, count, args, Path(work)) for count in args.sizes for model in args.models
        ]
    out = HERE / f"evaluate-cost-{args.tag}-cpu.json"
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
