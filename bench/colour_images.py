"""Own colour images, measured end to end (docs/lab/colour-images.md): each model trained by
`aegen.train` on a folder of emoji (every 10th image held out, made by bench/colour_data.py),
then its held-out reconstructions (PSNR, SSIM, mean colour error, CIE76 deltaE) and the
high-frequency power share of its reconstructions and samples against the held-out images'
(scoring/image_stats.py), with the training and sampling times.

    .venv/bin/python bench/colour_data.py            # the folders, under /tmp/aegen-colour
    .venv/bin/python bench/colour_images.py --sizes 32 64 --epochs 30

Prints one table and writes bench/colour-images-cpu.json; pictures (held-out images above
their reconstructions; samples) go to --pictures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import aegen
from aegen.data.datasets import load_dataset
from aegen.data.pixels import unit_images
from aegen.export.files import save_image_grid
from aegen.runs.folder import read_history
from aegen.scoring.image_stats import hf_share, reconstruction_fidelity

HERE = Path(__file__).parent


def measure(model: str, size: int, args: argparse.Namespace) -> dict:
    """Train one model at one size and measure it on the held-out folder."""
    split = Path(args.data)
    run_dir = Path(args.runs) / f"{model}-{size}"
    started = time.perf_counter()
    trained = aegen.train(
        model,
        str(split / "train"),
        image_size=size,
        epochs=args.epochs,
        out=run_dir,
        progress=False,
    )
    train_seconds = time.perf_counter() - started
    held = load_dataset(str(split / "heldout"), image_size=size, channels=3)
    originals = unit_images(held.images)
    rebuilt = trained.reconstruct(held.images, held.labels)
    started = time.perf_counter()
    samples = trained.sample(args.samples, seed=0)
    sample_seconds = time.perf_counter() - started
    reference = hf_share(originals)
    pictures = Path(args.pictures)
    pictures.mkdir(parents=True, exist_ok=True)
    shown = torch.cat([originals[:16], rebuilt[:16]])
    save_image_grid(pictures / f"colour-{model}-{size}-reconstructions.png", shown, 16)
    save_image_grid(pictures / f"colour-{model}-{size}-samples.png", samples[:64], 16)
    history = read_history(run_dir)
    stages = sorted({row.get("stage", 1) for row in history})
    return {
        "model": model,
        "size": size,
        "epochs": args.epochs,
        "train_images": trained.config.data.n_train + trained.config.data.n_val,
        "batch_size": trained.config.settings.batch_size,
        "autoencoder_epochs": sum(row.get("stage", 1) == 1 for row in history) or None,
        "stages": stages,
        **reconstruction_fidelity(originals, rebuilt),
        "reconstruction_hf_ratio": hf_share(rebuilt) / reference,
        "samples_hf_ratio": hf_share(samples) / reference,
        "train_seconds": train_seconds,
        "seconds_per_1000_samples": sample_seconds * 1000 / args.samples,
    }


def patches(args: argparse.Namespace) -> dict:
    """ldm on photo patches (the issue's tartan case): its run's own diagnosis and held-out
    colour fidelity."""
    run_dir = Path(args.runs) / "ldm-patches"
    started = time.perf_counter()
    trained = aegen.train(
        "ldm", args.patches, epochs=args.patch_epochs, out=run_dir, progress=False
    )
    seconds = time.perf_counter() - started
    held = trained.split("val")
    originals = unit_images(held.images)
    rebuilt = trained.reconstruct(held.images, held.labels)
    pictures = Path(args.pictures)
    shown = torch.cat([originals[:16], rebuilt[:16]])
    save_image_grid(pictures / "colour-ldm-patches-reconstructions.png", shown, 16)
    save_image_grid(pictures / "colour-ldm-patches-samples.png", trained.sample(64), 16)
    diagnosis = json.loads((run_dir / "diagnosis.json").read_text())
    return {
        "data": args.patches,
        "epochs": args.patch_epochs,
        **reconstruction_fidelity(originals, rebuilt),
        **diagnosis["checks"],
        "findings": diagnosis["findings"],
        "train_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/aegen-colour/emoji-google-split")
    parser.add_argument("--models", nargs="+", default=["ldm", "conv-vae", "vq-vae"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--patches", default="/tmp/aegen-colour/patches32.npy")
    parser.add_argument("--patch-epochs", type=int, default=10)
    parser.add_argument("--runs", default="/tmp/aegen-colour-runs")
    parser.add_argument("--pictures", default=str(HERE.parent / "docs" / "images"))
    parser.add_argument("--json", default=str(HERE / "colour-images-cpu.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    header = "size  model      PSNR   SSIM   colour  dE     HF rec  HF samp  train s  s/1k samp"
    print(header, flush=True)
    for size in args.sizes:
        for model in args.models:
            row = measure(model, size, args)
            rows.append(row)
            print(
                f"{size:>4}  {model:<9} {row['psnr']:6.2f} {row.get('ssim', float('nan')):6.3f} "
                f"{row['colour_error']:6.2f} {row['delta_e']:6.2f} "
                f"{row['reconstruction_hf_ratio']:6.2f} {row['samples_hf_ratio']:7.2f} "
                f"{row['train_seconds']:8.1f} {row['seconds_per_1000_samples']:9.1f}",
                flush=True,
            )
    tiles = patches(args) if args.patches else None
    if tiles:
        print(
            f"ldm on {tiles['data']} ({tiles['epochs']} epochs): PSNR {tiles['psnr']:.2f}  "
            f"colour {tiles['colour_error']:.2f}  HF rec {tiles['reconstructions_hf_ratio']:.2f}"
            f"  HF samp {tiles['samples_hf_ratio']:.2f}  {tiles['train_seconds']:.0f} s; "
            f"findings: {tiles['findings'] or 'none'}",
            flush=True,
        )
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    result = {"machine": machine, "rows": rows, "patches": tiles}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
