"""Where the time of a training step and of the NLL estimate goes, operator by operator.

    .venv/bin/python bench/profile_steps.py [--steps 200] [--json bench/profile-cpu.json]

For each reference model, torch.profiler records `--steps` training steps of the real Trainer
loop on random uint8 images (batch 128; data values do not change the arithmetic), after a
warm-up; for the VAE also one chunk of the k=1000 NLL estimate. The table groups operators into
matmuls (the work the benchmark's bound counts) and everything else, so the gap between an epoch
and its bound is measured rather than guessed.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from aegen.likelihood import log_weights
from aegen.models import build_model
from aegen.train import TrainConfig, Trainer

HERE = Path(__file__).resolve().parent
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::convolution_backward",
           "aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
           "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward", "aten::slow_conv_transpose2d",
           "aten::slow_conv_transpose2d_backward"}


def grouped(prof, steps: int, top: int = 12) -> dict:
    """Self CPU time per operator (ms per step), largest first, and the matmul share."""
    per_op: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        per_op[event.key] += event.self_cpu_time_total / 1000 / steps
    total = sum(per_op.values())
    matmul = sum(t for name, t in per_op.items() if name in MATMULS)
    ranked = sorted(per_op.items(), key=lambda item: -item[1])
    return {"ms_per_step": total, "matmul_ms": matmul,
            "top": [(name, round(ms, 4)) for name, ms in ranked[:top]]}


def profile_training(name: str, steps: int) -> dict:
    images = torch.randint(0, 256, (128 * (steps + 20), 28, 28), dtype=torch.uint8)
    trainer = Trainer(build_model(name), TrainConfig(), images[:128 * 20], images[:128])
    trainer.train_epoch(1, False)  # warm-up: allocator, kernels chosen, Adam state created
    trainer.train_images = images[:128 * steps]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_epoch(2, False)
    return grouped(prof, steps)


def profile_nll(chunks: int) -> dict:
    model = build_model("vae").eval()
    x = torch.rand(64, 1, 28, 28)
    generator = torch.Generator().manual_seed(0)
    log_weights(model, x[:2], 16, generator)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(chunks):
            log_weights(model, x, 1000, generator)
    return grouped(prof, chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=HERE / "profile-cpu.json")
    args = parser.parse_args()
    report = {name: profile_training(name, args.steps) for name in ("ae", "conv-ae", "vae")}
    report["vae-nll (per 64 images x k=1000)"] = profile_nll(3)
    args.json.write_text(json.dumps(report, indent=2))
    for name, r in report.items():
        print(f"\n{name}: {r['ms_per_step']:.2f} ms per step, matmuls {r['matmul_ms']:.2f} ms "
              f"({100 * r['matmul_ms'] / r['ms_per_step']:.0f}%)")
        for op, ms in r["top"]:
            print(f"  {ms:8.3f} ms  {op}")


if __name__ == "__main__":
    main()
