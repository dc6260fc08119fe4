"""Do the faster-looking paths pay? channels_last for the convolutional models, torch.compile for
the loss, each against the plain path in one sitting.

    .venv/bin/python bench/fast_paths.py --data-root ../shared/data [--json bench/fast-paths-cpu.json]

Each variant trains epochs over the same 20,000 Fashion-MNIST images (batch 128, Adam 1e-3);
the variants of one model alternate, three rounds, and the best epoch of each counts (vae-gan, 60x
slower per image, on 2,000). The first epoch of each variant is reported apart: it holds
torch.compile's one-off cost. Models whose channels_last epochs came out faster here say so
(`channels_last = True`); torch.compile is not used (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from aegen.data.datasets import load_dataset
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.trainer import Trainer

HERE = Path(__file__).resolve().parent


def trainer(name: str, images: torch.Tensor, variant: str) -> Trainer:
    """A trainer in one variant: contiguous or channels_last layout, eager or compiled loss."""
    torch.manual_seed(0)
    result = Trainer(build_model(name), TrainSettings(), images, images[:10])
    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    if variant in layouts:  # override the model's own choice
        result.memory_format = layouts[variant]
        result.model.to(memory_format=result.memory_format)
    if variant == "compiled":
        result.loss_module = torch.compile(result.loss_module)
    return result


def epoch_seconds(t: Trainer, epoch: int) -> float:
    started = time.perf_counter()
    t.train_epoch(epoch, False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path(os.environ.get("AEGEN_DATA", "../shared/data"))
    )
    parser.add_argument("--json", type=Path, default=HERE / "fast-paths-cpu.json")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as aegen.train does, before torch starts threads
    images = load_dataset("fashion-mnist", "train", args.data_root).images[:20_000]
    plans = {
        "conv-ae": ("contiguous", "channels_last"),
        "conv-vae": ("contiguous", "channels_last"),
        "vae-gan": ("contiguous", "channels_last"),
        "vae": ("eager", "compiled"),
        "ae": ("eager", "compiled"),
    }
    report: dict[str, dict] = {}
    for name, variants in plans.items():
        trainers = {
            v: trainer(name, images if name != "vae-gan" else images[:2_000], v) for v in variants
        }
        entry = report.setdefault(name, {})
        for variant, t in trainers.items():  # first epoch: warm-up, and the compile for "compiled"
            entry[f"{variant}_first_epoch"] = epoch_seconds(t, 1)
        for round_ in range(args.rounds):
            for variant, t in trainers.items():
                seconds = epoch_seconds(t, 2 + round_)
                entry[variant] = min(entry.get(variant, float("inf")), seconds)
        plain, other = variants
        entry[f"{other} speed-up"] = entry[plain] / entry[other]
        print(
            f"{name}: {plain} {entry[plain]:.3f}s, {other} {entry[other]:.3f}s per epoch "
            f"({'2k' if name == 'vae-gan' else '20k'} images), {other} speed-up "
            f"{entry[f'{other} speed-up']:.2f}x; first epoch of {other}: "
            f"{entry[f'{other}_first_epoch']:.1f}s",
            flush=True,
        )
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
