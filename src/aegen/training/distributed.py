"""Data-parallel training across the processes torchrun starts (gloo on CPU, nccl on GPU).

Every rank holds the whole data set and the same shuffled order; each takes its own slice of
every global batch, DistributedDataParallel averages the gradients, so the update equals the
single-process one on the same global batch. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aegen.models.base import Autoencoder

CPU = torch.device("cpu")


def world() -> tuple[int, int]:
    """(rank, world size), initialising the process group once when torchrun started us."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1
    if not dist.is_initialized():
        # gloo for CPU tensors, nccl for GPU ones: a CPU run works on a GPU machine too.
        if torch.cuda.is_available():
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
            # A rank that fails ends the group too, while the interpreter is whole: gloo's
            # threads still hold tensors, and freeing them in its teardown aborts (SIGABRT).
            # (Not nccl's: its teardown may wait on ranks blocked in a collective.)
            atexit.register(_end_group)
    return dist.get_rank(), size


def finish() -> None:
    """End the process group aegen began, once every rank is done (rank 0 writes the run's
    pictures after the last epoch): a rank that exits with the group still open can abort in
    gloo's teardown while the others still run."""
    if not dist.is_initialized():
        return
    dist.barrier()
    _end_group()


def _end_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process writes files and logs (rank 0, or the only process); torchrun's
    RANK says so without joining the group, so this holds also after finish()."""
    return int(os.environ.get("RANK", "0")) == 0


class LossModule(nn.Module):
    """model.loss as a forward pass, so that DistributedDataParallel sees (and syncs) it."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        out = self.model.loss(x, labels)
        return out.loss, out.terms, out.group_losses


def loss_module(
    model: Autoencoder, several_groups: bool = False, device: torch.device = CPU
) -> nn.Module:
    """The model's loss, wrapped in DistributedDataParallel when there are several ranks.

    DDP averages gradients during backward(); a model with several update groups takes each
    group's gradient with autograd.grad instead, so the trainer averages them itself.
    """
    module = LossModule(model)
    if world()[1] == 1 or several_groups:
        return module
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def sum_across_ranks(values: dict[str, float], device: torch.device = CPU) -> dict[str, float]:
    """Add up per-rank totals (one all-reduce for the whole dictionary, on nccl's device)."""
    if world()[1] == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.cpu().tolist()))


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the parameters' gradients over all ranks (one all-reduce per parameter)."""
    size = world()[1]
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad /= size


def any_rank(flag: bool, device: torch.device = CPU) -> bool:
    """Whether any rank says yes (rank 0's callbacks decide to stop for all of them)."""
    if world()[1] == 1:
        return flag
    return sum_across_ranks({"flag": float(flag)}, device)["flag"] > 0
