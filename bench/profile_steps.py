"""Where the time of a training step and of the NLL estimate goes, operator by operator.

    .venv/bin/python bench/profile_steps.py [--steps 200] [--json bench/profile-cpu.json]

First, without the profiler, a training step taken apart (best of several rounds, interleaved):
the Trainer's step; a minimal hand-written loop doing the same (so the trainer's own overhead
shows); forward + backward without the optimizer; the forward pass alone; the fused Adam update
alone; and the bare matmuls of one step (the benchmark's bound). Then torch.profiler records
`--steps` steps of the real Trainer loop on random uint8 images (batch 128; pixel values do not
change the arithmetic) and, for the VAE, the k=1000 NLL estimate on 64 images; operators are
grouped into matmuls (what the bound counts) and the rest, largest first.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from aegen.data.pixels import to_model_range
from aegen.latent.likelihood import log_weights
from aegen.models import build_model
from aegen.settings.train import TrainSettings
from aegen.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
MATMULS = {
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::convolution_backward",
    "aten::mkldnn_convolution",
    "aten::_convolution",
    "aten::convolution",
    "aten::_slow_conv2d_forward",
    "aten::_slow_conv2d_backward",
    "aten::slow_conv_transpose2d",
    "aten::slow_conv_transpose2d_backward",
}


def grouped(prof, steps: int, top: int = 12) -> dict:
    """Self CPU time per operator (ms per step), largest first, and the matmul share."""
    per_op: dict[str, float] = defaultdict(float)
    calls = 0
    for event in prof.key_averages():
        per_op[event.key] += event.self_cpu_time_total / 1000 / steps
        calls += event.count if event.key.startswith("aten::") else 0
    total = sum(per_op.values())
    matmul = sum(t for name, t in per_op.items() if name in MATMULS)
    ranked = sorted(per_op.items(), key=lambda item: -item[1])
    return {
        "ms_per_step": total,
        "matmul_ms": matmul,
        "aten_calls_per_step": calls / steps,
        "top": [(name, round(ms, 4)) for name, ms in ranked[:top]],
    }


def profile_training(name: str, steps: int) -> dict:
    images = torch.randint(0, 256, (128 * (steps + 20), 28, 28), dtype=torch.uint8)
    trainer = Trainer(build_model(name), TrainSettings(), images[: 128 * 20], images[:128])
    trainer.train_epoch(1, False)  # warm-up: allocator, kernels chosen, Adam state created
    trainer.train_images = images[: 128 * steps]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_epoch(2, False)
    return grouped(prof, steps)


def best_ms_per_step(function, steps: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return 1000 * best / steps


def decompose_step(name: str, steps: int) -> dict[str, float]:
    """Milliseconds per training step, whole and in parts (see the module docstring)."""
    images = torch.randint(0, 256, (128 * steps, 28, 28), dtype=torch.uint8)
    # Three copies of the model: the trainer's, the minimal loop's, and one the parts run on
    # (their gradients and repeated Adam steps would derail a model that is being trained).
    trainer = Trainer(build_model(name), TrainSettings(), images, images[:128])
    loop = Trainer(build_model(name), TrainSettings(), images[:128], images[:128])
    parts_model = Trainer(build_model(name), TrainSettings(), images[:128], images[:128])
    model, optimizer = loop.model, loop.optimizers["model"]
    batches = [trainer._batch(images[i : i + 128]) for i in range(0, len(images), 128)]

    def minimal():
        for index in torch.randperm(len(images)).split(128):
            x = to_model_range(images[index], model.value_range)
            loss = model.loss(x.contiguous(memory_format=trainer.memory_format)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def forward_backward():
        for x in batches:
            parts_model.model.zero_grad(set_to_none=True)
            parts_model.model.loss(x).loss.backward()

    def forward():
        with torch.no_grad():
            for x in batches:
                parts_model.model.loss(x)

    def adam():
        for _ in batches:
            parts_model.optimizers["model"].step()

    with FlopCounterMode(display=False) as counter:
        parts_model.model.loss(batches[0]).loss.backward()
    matmul_shapes = [(a.shape, b.shape) for a, b in _step_matmuls(parts_model.model, batches[0])]
    operands = [(torch.randn(*sa), torch.randn(*sb)) for sa, sb in matmul_shapes]

    def matmuls():
        for _ in batches:
            for a, b in operands:
                torch.mm(a, b)

    parts = {
        "trainer": lambda: trainer.train_epoch(1, False),
        "minimal loop": minimal,
        "forward + backward": forward_backward,
        "forward": forward,
        "adam": adam,
    }
    if operands:
        parts["bare matmuls"] = matmuls
    results: dict[str, float] = {}
    for _ in range(3):
        for part, function in parts.items():
            results[part] = min(
                results.get(part, float("inf")), best_ms_per_step(function, steps, 1)
            )
    results["step GFLOP"] = counter.get_total_flops() / 1e9
    return results


def _step_matmuls(
    model: torch.nn.Module, x: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 2-d matmul operand pairs of one forward + backward (linear layers only)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    pairs = []

    class MatmulRecorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                a, b = (
                    (args[0], args[1]) if func is torch.ops.aten.mm.default else (args[1], args[2])
                )
                pairs.append((a, b))
            return func(*args, **(kwargs or {}))

    with MatmulRecorder():
        model.loss(x).loss.backward()
    return pairs


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
    torch.set_flush_denormal(True)  # as aegen.train does, before torch starts threads
    parts = {name: decompose_step(name, args.steps) for name in ("ae", "conv-ae", "vae")}
    print("ms per training step (batch 128), taken apart")
    names = list(parts["vae"])
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for name, values in parts.items():
        print(
            f"| {name} | " + " | ".join(f"{values.get(n, float('nan')):.2f}" for n in names) + " |"
        )
    report = {name: profile_training(name, args.steps) for name in ("ae", "conv-ae", "vae")}
    report["vae-nll (per 64 images x k=1000)"] = profile_nll(3)
    args.json.write_text(json.dumps({"parts": parts, "profiles": report}, indent=2))
    for name, r in report.items():
        print(
            f"\n{name}: {r['ms_per_step']:.2f} ms per step (profiled), matmuls {r['matmul_ms']:.2f} ms "
            f"({100 * r['matmul_ms'] / r['ms_per_step']:.0f}%), {r['aten_calls_per_step']:.0f} aten calls"
        )
        for op, ms in r["top"]:
            print(f"  {ms:8.3f} ms  {op}")


if __name__ == "__main__":
    main()
