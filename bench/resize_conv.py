"""The resize-then-convolve decoders two ways (issue #33): as nn.Upsample followed by nn.Conv2d,
as they were built, and as ResizeConv2d (models/conv_nets.py), the one stride-2 transposed
convolution with tied taps that computes the same function. Each model's whole decoder runs
forward and backward on the features its own encoder gives, the two ways interleaved, the best
of several tries; their outputs are compared too.

    .venv/bin/python bench/resize_conv.py [--json bench/resize-conv-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from aegen.experiments.hardware import hardware
from aegen.models import build_model
from aegen.models.conv_nets import ResizeConv2d

# (what, model, options, batch): the batches the models train with on such data.
CASES = (
    ("ldm, 28 px gray", "ldm", {}, 64),
    (
        "ldm, 32 px colour",
        "ldm",
        {"image_size": 32, "channels": 3, "hidden_channels": [64, 128]},
        16,
    ),
    ("ldm, 64 px colour", "ldm", {"image_size": 64, "channels": 3}, 16),
    ("conv-vae, 32 px colour", "conv-vae", {"image_size": 32, "channels": 3}, 128),
)


def as_built_before(decoder: nn.Sequential) -> nn.Sequential:
    """The same decoder with nn.Upsample + nn.Conv2d in place of each ResizeConv2d (same weights)."""
    layers: list[nn.Module] = []
    for layer in decoder:
        if isinstance(layer, nn.Identity):  # where the resize was
            layers.append(nn.Upsample(scale_factor=2.0))
        elif isinstance(layer, ResizeConv2d):
            plain = nn.Conv2d(layer.in_channels, layer.out_channels, 3, padding=1)
            plain.load_state_dict(layer.state_dict())
            layers.append(plain)
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


def decoder_input(model: nn.Module, batch: int) -> torch.Tensor:
    """The features the decoder receives when the model decodes a batch of codes."""
    seen: list[torch.Tensor] = []
    hook = model.decoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        model.decode(torch.randn(batch, model.latent_dim))
    hook.remove()
    return seen[0].detach().clone().requires_grad_(True)


def step_seconds(decoder: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        decoder(x).sum().backward()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "resize-conv-cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    print(
        "| decoder | batch | Upsample + Conv2d (ms) | ResizeConv2d (ms) | ratio | largest difference |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for what, name, options, batch in CASES:
        model = build_model(name, options)
        fused = model.decoder
        plain = as_built_before(fused)
        x = decoder_input(model, batch)
        with torch.no_grad():
            difference = (plain(x) - fused(x)).abs().max().item()
        best = {"plain": float("inf"), "fused": float("inf")}
        for _ in range(args.tries):  # interleaved, so that both see the same machine
            best["plain"] = min(best["plain"], step_seconds(plain, x))
            best["fused"] = min(best["fused"], step_seconds(fused, x))
        ratio = best["fused"] / best["plain"]
        rows.append(
            {"decoder": what, "batch": batch, "difference": difference}
            | {"upsample_conv_ms": best["plain"] * 1e3, "resize_conv_ms": best["fused"] * 1e3}
        )
        print(
            f"| {what} | {batch} | {best['plain'] * 1e3:.2f} | {best['fused'] * 1e3:.2f} | "
            f"{ratio:.2f} | {difference:.1e} |",
            flush=True,
        )
    report = {"hardware": hardware(), "threads": torch.get_num_threads(), "rows": rows}
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
