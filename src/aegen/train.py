"""One trainer for every model: it knows nothing about a model beyond `model.loss(x, labels)`
and `model.update_groups()`.

Batches are slices of a shuffled index into one uint8 tensor. Every epoch reseeds torch from
(seed, epoch), so a run resumed from an epoch's checkpoint continues bit-exactly on CPU.

Update rules: most models have one parameter group minimising `loss`. A model with several
groups (VAE-GAN: encoder, decoder, discriminator) gives each group's loss in
LossOutput.group_losses; each group gets its own Adam and the gradient of its own loss only,
all from one forward pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aegen import distributed
from aegen.data import to_model_range
from aegen.errors import ConfigError, TrainingError
from aegen.models.base import Autoencoder

EVAL_BATCH = 1024


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the classic setup (Adam 1e-3, batch 128)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    val_fraction: float = 0.1

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"validation fraction must lie between 0 and 1, got {self.val_fraction}")


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of one epoch: shuffling and sampling noise depend on (seed, epoch) only."""
    return seed * 1_000_003 + epoch


class Trainer:
    """Adam on model.loss over uint8 images [N, 28, 28] (and their labels, for conditional
    models); reports per-epoch train and val loss."""

    def __init__(self, model: Autoencoder, config: TrainConfig,
                 train_images: torch.Tensor, val_images: torch.Tensor,
                 train_labels: torch.Tensor | None = None, val_labels: torch.Tensor | None = None):
        config.check()
        self.model, self.config = model, config
        self.train_images, self.val_images = train_images, val_images
        self.train_labels, self.val_labels = train_labels, val_labels
        if model.conditional and (train_labels is None or val_labels is None):
            raise ConfigError("a conditional model needs the images' labels")
        self.rank, self.world_size = distributed.world()
        self.groups = model.update_groups()
        self.loss_module = distributed.loss_module(model, several_groups=len(self.groups) > 1)
        betas = getattr(model, "adam_betas", (0.9, 0.999))
        # The fused kernel updates all parameters in one pass instead of a dozen foreach ops.
        self.optimizers = {
            name: torch.optim.Adam(params, lr=config.lr, betas=betas,
                                   weight_decay=config.weight_decay, fused=True)
            for name, params in self.groups.items()}

    def fit(self, start_epoch: int = 0,
            on_epoch_end: Callable[[dict], None] | None = None,
            progress: bool | None = None) -> list[dict]:
        """Train epochs start_epoch+1 .. config.epochs; call on_epoch_end after each one."""
        history = []
        for epoch in range(start_epoch + 1, self.config.epochs + 1):
            started = time.perf_counter()
            metrics = {"epoch": epoch, **self.train_epoch(epoch, progress)}
            metrics.update({f"val_{k}": v for k, v in self.evaluate(self.val_images, epoch,
                                                                   self.val_labels).items()})
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(metrics)
        return history

    def train_epoch(self, epoch: int, progress: bool | None = None) -> dict[str, float]:
        """One pass over the shuffled training images; returns mean loss and terms."""
        from tqdm.auto import tqdm

        torch.manual_seed(epoch_seed(self.config.seed, epoch))
        self.model.train()
        order = torch.randperm(len(self.train_images))
        batches = order.split(self.config.batch_size)
        if self.world_size > 1:  # each rank its slice of every global batch; none left empty
            batches = [b.tensor_split(self.world_size)[self.rank] for b in batches
                       if len(b) >= self.world_size]
        totals: dict[str, float] = {}
        # tqdm's disable=None: a bar only on a terminal; other ranks never draw one.
        disable = True if self.rank != 0 else (None if progress is None else not progress)
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.config.epochs}", leave=False,
                   disable=disable, unit="batch")
        for step, index in enumerate(bar, start=1):
            x = to_model_range(self.train_images[index], self.model.value_range)
            labels = self.train_labels[index] if self.train_labels is not None else None
            loss_tensor, terms, group_losses = self.loss_module(x, labels)
            loss = loss_tensor.item()
            values = {"loss": loss, **{f"{name} loss": v.item()
                                       for name, v in (group_losses or {}).items()}}
            broken = next((name for name, v in values.items() if not math.isfinite(v)), None)
            if broken is not None:
                raise TrainingError(
                    f"the {broken} became {values[broken]} at epoch {epoch}, step {step}; "
                    f"the learning rate "
                    f"({self.config.lr}) is probably too high or the data are out of range; "
                    "the last checkpoint is intact")
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            if group_losses is None:
                loss_tensor.backward()
            else:
                self._backward_per_group(group_losses)
            for optimizer in self.optimizers.values():
                optimizer.step()
            _accumulate(totals, loss, terms, len(index))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        totals = distributed.sum_across_ranks(totals)
        images = totals.pop("images")
        return {k: v / images for k, v in totals.items()}

    def _backward_per_group(self, group_losses: dict[str, torch.Tensor]) -> None:
        """Each group's gradient from its own loss only (the model's update rule)."""
        names = list(self.groups)
        for i, name in enumerate(names):
            params = self.groups[name]
            grads = torch.autograd.grad(group_losses[name], params, allow_unused=True,
                                        retain_graph=i < len(names) - 1)
            for param, grad in zip(params, grads):
                param.grad = grad
        if self.world_size > 1:
            distributed.average_gradients([p for params in self.groups.values() for p in params])

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, epoch: int = 0,
                 labels: torch.Tensor | None = None) -> dict[str, float]:
        """Mean loss and terms on held-out images (noise seeded, so the number is repeatable)."""
        self.model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed(self.config.seed, -1 - epoch))
            totals: dict[str, float] = {}
            for index in torch.arange(len(images)).split(EVAL_BATCH):
                x = to_model_range(images[index], self.model.value_range)
                out = self.model.loss(x, labels[index] if labels is not None else None)
                _accumulate(totals, out.loss.item(), out.terms, len(index))
        images = totals.pop("images")
        return {k: v / images for k, v in totals.items()}


def _accumulate(totals: dict[str, float], loss: float, terms: dict[str, torch.Tensor], n: int) -> None:
    totals["images"] = totals.get("images", 0.0) + n
    totals["loss"] = totals.get("loss", 0.0) + loss * n
    for name, value in terms.items():
        totals[name] = totals.get(name, 0.0) + float(value) * n
