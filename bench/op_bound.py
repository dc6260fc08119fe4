"""The bound of a piece of work that is not one network's training step: every matrix-class
operation it runs (convolutions forward and backward, matrix products, the pairwise distances of
the k-NN scores), each run alone on tensors of the same shape, layout and type, the best of
several tries, times how often the work ran it. What the bound leaves out is everything else:
activations, normalisations, eigen-decompositions, scikit-learn, Python. Used by ldm_speed.py
for `evaluate`'s phases.

The operations are recorded below autograd (a TorchDispatchMode), so backward passes count too.
Recording slows the work down, so a phase is timed in one run and recorded in another.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

BOUND_OPS = {
    torch.ops.aten.convolution.default,
    torch.ops.aten.convolution_backward.default,
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
    torch.ops.aten._euclidean_dist.default,
    torch.ops.aten._cdist_forward.default,
}
# (shape, stride, dtype) for a tensor argument; the value itself for any other
Spec = tuple[Any, ...]
Call = tuple[Any, tuple[Spec, ...]]


def _spec(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, list | tuple):
        return tuple(_spec(v) for v in value)
    return value


def _made(spec: Any) -> Any:
    if isinstance(spec, tuple) and spec and spec[0] == "tensor":
        _, shape, stride, dtype = spec
        # storage for any strides, broadcast (stride 0) ones included, filled, then viewed
        size = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
        base = torch.empty(size, dtype=dtype)
        base = base.normal_() if dtype.is_floating_point else base.zero_()
        return base.as_strided(shape, stride)
    if isinstance(spec, tuple):
        return type(spec)(_made(s) for s in spec)
    return spec


class MatrixOps(TorchDispatchMode):
    """Counts the matrix-class operations run while it is open, by operation and arguments (one
    called with keyword arguments is left out: a smaller bound, never a flattering one)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[Call] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in BOUND_OPS and not kwargs:
            self.calls[(func, tuple(_spec(a) for a in args))] += 1
        return func(*args, **(kwargs or {}))


def best_time(function: Callable[[], object], repeats: int = 5) -> float:
    """The shortest of `repeats` timed calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bound_seconds(calls: Counter[Call], repeats: int = 5) -> float:
    """The seconds the recorded operations take run alone (best of `repeats` each, after one
    that picks the kernel)."""
    total = 0.0
    with torch.no_grad():
        for (func, specs), count in calls.items():
            args = [_made(s) for s in specs]
            func(*args)
            total += count * best_time(lambda: func(*args), repeats)  # noqa: B023
    return total


def flops(calls: Counter[Call]) -> float:
    """The recorded operations' FLOPs by torch's counter (each distinct one run once more, on
    random tensors, times its count)."""
    from torch.utils.flop_counter import FlopCounterMode

    total = 0.0
    with torch.no_grad():
        for (func, specs), count in calls.items():
            with FlopCounterMode(display=False) as counter:
                func(*[_made(s) for s in specs])
            total += count * counter.get_total_flops()
    return total
