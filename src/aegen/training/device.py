"""Where a run computes (CPU, a CUDA GPU when there is one, or an Apple GPU when asked for) and
in which precision.

Everything runs on the CPU, so CI and GPU-less machines take the same code path; `auto` picks
the GPU where torch sees one. Under torchrun each process takes the GPU of its LOCAL_RANK.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from aegen.errors import ConfigError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """auto, cpu, cuda, cuda:N or mps -> a torch.device that exists here, or a one-line
    ConfigError. auto takes a CUDA GPU where there is one, else the CPU (never MPS: aegen's
    tests do not run there, so it is used only when asked for)."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                f"device {name!r} was asked for, but torch sees no Apple GPU (MPS) here "
                f"(torch {torch.__version__}); use --device cpu"
            )
        return torch.device("mps")
    if device.type != "cuda":
        raise ConfigError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} was asked for, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}); use --device cpu"
        )
    index = device.index if device.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device cuda:{index} does not exist: torch sees {torch.cuda.device_count()} GPU(s)"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Compute with denormal floats (below 1.2e-38) as zero on the CPU inside this block.

    Dead ReLU units under weight decay leave weights and Adam moments in the denormal range, and
    the CPU's slow path for them made `ae` epochs on Fashion-MNIST grow from 1.3 s to 4.5 s over
    ten epochs (bench/README.md); no loss or gradient of these models is that small. The flag
    belongs to each thread and threads inherit it when they start: aegen.train opens the block
    before any tensor work, so torch's worker threads flush too (a program that ran torch before
    calling aegen.train flushes in its own thread only, unless it calls
    torch.set_flush_denormal(True) first). The calling thread gets its old state back at the end,
    so the user's own floats keep IEEE behaviour."""
    was_flushing = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def _flushing() -> bool:
    return (torch.full((1,), 1e-40) * 1.0).item() == 0.0


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 mixed precision for the forward pass (matmuls in bf16, reductions and losses in
    fp32 as autocast decides); fp32 does nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    # No weight-cast cache: a CUDA graph's recording must not reuse casts made outside it, and
    # the cache saves little here (the context, and so the cache, lasts one step).
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
