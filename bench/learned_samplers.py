"""Learned latent samplers, aegen's beside pythae's, on the same trained networks (issue #16).

    .venv/bin/python bench/learned_samplers.py RUN [RUN...] [--data-root DIR] [--out FILE.json]

For each aegen run folder (an `ae` or `vae` trained by `aegen train`), one at a time:

- floors: real training images and the run's reconstructions of them, scored as samples;
- aegen's samplers (gmm, flow, diffusion, two-stage; a name aegen does not know is skipped with
  a note): the saved sampler file deleted, then `run.sampler(NAME)` timed (the fit on the
  training codes, which are encoded once beforehand and timed apart) and the draw of the samples
  timed (`sample_in_chunks`: codes and decoding);
- pythae 0.1.2's MAFSampler and TwoStageVAESampler (bench/peers/pythae_samplers.py, in the venv
  bench/setup_peers.sh makes) fitted on the same weights and training images with pythae's
  default training (100 epochs, batch 64, Adam 1e-4); their fit time includes encoding the
  training images, which pythae does inside fit().

Every set of samples is scored as `aegen evaluate` scores a sampler (`score_run`): the run's
judge, features of the test split as the reference, same number of samples and seed. Prints a
markdown table and writes JSON. pythae runs on the CPU here (CUDA hidden from it) like aegen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aegen
from aegen.data.pixels import unit_images
from aegen.errors import ConfigError
from aegen.experiments.hardware import hardware
from aegen.latent.samplers import make_sampler
from aegen.scoring.quality import reference
from aegen.scoring.scores import classify, judge, quality_scores
from aegen.trained import TrainedModel

HERE = Path(__file__).resolve().parent
PYTHAE = Path(os.environ.get("PYTHAE_PYTHON", HERE / ".venv-pythae" / "bin" / "python"))
PEER = HERE / "peers" / "pythae_samplers.py"
PEER_MODELS = ("ae", "vae")  # the models the peer script rebuilds in pythae
CODES_CHECKED = 1000  # training images whose codes pythae's encoder must reproduce


class Judge:
    """The run's judge and reference features, as `score_run` sets them up."""

    def __init__(self, run: TrainedModel):
        test = run.split("test")
        dataset = run.config.dataset
        self.reference = (
            f"{dataset} test split ({len(test)} images)"
            if run.has_test_split
            else f"the run's held-out validation images ({len(test)})"
        )
        self.net, self.record = judge(run, test, self.reference)
        self.labelled = self.record.get("kind") != "random-cnn"
        self.real_features = reference(classify(self.net, unit_images(test.images))[0])

    def score(self, images: torch.Tensor) -> dict[str, Any]:
        """FD-aegen, precision, recall, class coverage of images [N, C, H, W] in [0, 1]."""
        return quality_scores(self.net, images, self.real_features, self.labelled)


def aegen_sampler(run: TrainedModel, name: str, n: int, seed: int, judge_: Judge) -> dict:
    """Fit aegen's sampler afresh (timed), draw n images (timed) and score them."""
    try:
        make_sampler(name, run.latent_dim)
    except ConfigError as exc:
        print(f"  aegen {name}: skipped ({exc})", flush=True)
        return {"skipped": str(exc)}
    (run.run_dir / f"sampler-{name}.safetensors").unlink(missing_ok=True)
    started = time.perf_counter()
    run.sampler(name)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    images = torch.cat(list(run.sample_in_chunks(n, seed=seed, sampler=name)))
    sample_seconds = time.perf_counter() - started
    return {"fit_seconds": fit_seconds, "sample_seconds": sample_seconds, **judge_.score(images)}


def pythae_samplers(
    run: TrainedModel, train_images: torch.Tensor, args: argparse.Namespace, judge_: Judge
) -> dict[str, Any]:
    """Run the peer script on this run's weights and training images; score what it drew."""
    if run.name not in PEER_MODELS or tuple(run.model.image_shape) != (1, 28, 28):
        shape = "x".join(map(str, run.model.image_shape))
        return {
            "skipped": f"the peer rebuilds only 28x28x1 {' and '.join(PEER_MODELS)}, "
            f"not {run.name} on {shape} images"
        }
    with tempfile.TemporaryDirectory(prefix="aegen-pythae-") as tmp:
        folder = Path(tmp)
        images = train_images.reshape(-1, 1, 28, 28).numpy()
        np.save(folder / "train.npy", images)
        np.save(folder / "codes.npy", run.encode(train_images[:CODES_CHECKED]).numpy())
        command = [
            str(PYTHAE),
            str(PEER),
            str(run.run_dir / "model.safetensors"),
            *("--images", str(folder / "train.npy"), "--codes", str(folder / "codes.npy")),
            *("--out-dir", str(folder / "samples"), "--model", run.name),
            *("--samplers", args.pythae_samplers, "--n-samples", str(args.n_samples)),
            *("--seed", str(args.seed)),
            *(("--epochs", str(args.pythae_epochs)) if args.pythae_epochs else ()),
        ]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        with open(folder / "peer.log", "w") as log:  # pythae's progress bars and logging
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        if done.returncode != 0:
            tail = (folder / "peer.log").read_text().strip().splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
            raise SystemExit(f"the pythae peer failed on {run.run_dir} (exit {done.returncode})")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for kind in args.pythae_samplers.split(","):
            entry = result[kind]
            if "path" in entry:
                samples = torch.from_numpy(np.load(entry.pop("path")))
                entry.update(judge_.score(samples))
            else:
                print(f"  pythae {kind}: skipped ({entry['skipped']})", flush=True)
        return result


def bench_run(run_dir: Path, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Every row of one run: floors, aegen's samplers, pythae's samplers."""
    run = aegen.load(run_dir, args.data_root)
    label = f"{run.config.dataset} {run.name}"
    print(f"{label}: {run.name} on {run.config.dataset}", flush=True)
    judge_ = Judge(run)
    train_images = run.split("train").images
    started = time.perf_counter()
    codes = run.train_codes  # encoded once, shared by every aegen sampler fitted below
    encode_seconds = time.perf_counter() - started
    rows = []

    def add(library: str, sampler: str, entry: dict) -> None:
        rows.append({"run": label, "model": run.name, "library": library, "sampler": sampler})
        rows[-1].update(entry)

    floor = train_images[: args.n_samples]
    add("", "real data (training images)", judge_.score(unit_images(floor)))
    add("aegen", "reconstructions (training images)", judge_.score(run.reconstruct(floor)))
    for name in args.samplers.split(","):
        print(f"  aegen {name} ...", flush=True)
        add("aegen", name, aegen_sampler(run, name, args.n_samples, args.seed, judge_))
    peer: dict[str, Any] = {"skipped": "--no-pythae"}
    if not args.no_pythae:
        print(f"  pythae {args.pythae_samplers} ...", flush=True)
        peer = pythae_samplers(run, train_images, args, judge_)
        for kind in args.pythae_samplers.split(","):
            add(f"pythae {peer.get('pythae', '')}".strip(), kind, peer.get(kind, peer))
    info = {
        "model": run.name,
        "dataset": run.config.dataset,
        "train_images": len(train_images),
        "reference": judge_.reference,
        "judge": judge_.record,
        "latent_dim": codes.shape[1],
        "encode_train_seconds": encode_seconds,
        "pythae": {k: v for k, v in peer.items() if not isinstance(v, dict)},
    }
    return info, rows


def cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else ""


def table(rows: list[dict]) -> str:
    """The rows as a markdown table (a skipped sampler keeps its row, with its reason)."""
    lines = [
        "| run | library | sampler | fit s | sample s | FD-aegen ↓ | precision ↑ | recall ↑ "
        "| label entropy ↑ |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        skipped = r.get("skipped", "").split(";")[0]  # the reason's first clause; JSON has all
        sampler = r["sampler"] + (f" (skipped: {skipped})" if skipped else "")
        numbers = [
            cell(r.get("fit_seconds"), 1),
            cell(r.get("sample_seconds"), 2),
            cell(r.get("fd_aegen"), 2),
            cell(r.get("precision"), 3),
            cell(r.get("recall"), 3),
            cell(r.get("label_entropy"), 3),
        ]
        lines.append(f"| {r['run']} | {r['library']} | {sampler} | {' | '.join(numbers)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="aegen run folders (ae or vae)")
    parser.add_argument("--data-root", type=Path, help="default: the run's own, or $AEGEN_DATA")
    parser.add_argument("--samplers", default="gmm,flow,diffusion,two-stage", help="aegen's")
    parser.add_argument("--pythae-samplers", default="maf,two-stage")
    parser.add_argument("--pythae-epochs", type=int, help="default: pythae's own (100)")
    parser.add_argument("--no-pythae", action="store_true", help="aegen's samplers only")
    parser.add_argument("--n-samples", type=int, default=10_000, help="per sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "learned-samplers-cpu.json")
    args = parser.parse_args()
    if not args.no_pythae and not PYTHAE.exists():
        parser.error(f"{PYTHAE} is missing: run bash bench/setup_peers.sh or pass --no-pythae")

    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "hardware": hardware(),
        "aegen": aegen.__version__,
        "protocol": {
            "samples_per_sampler": args.n_samples,
            "seed": args.seed,
            "pythae_epochs": args.pythae_epochs or "pythae's default",
            "fit": "aegen: run.sampler(NAME) on cached training codes; pythae: sampler.fit",
        },
        "runs": {},
        "rows": [],
    }
    for run_dir in args.runs:
        info, rows = bench_run(run_dir, args)
        results["runs"][str(run_dir)] = info
        results["rows"].extend(rows)
    print(table(results["rows"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
