"""One trainer for every model: it knows nothing about a model beyond `model.loss(x, labels)`
and `model.update_groups()`.

Batches are slices of a shuffled index into one uint8 tensor. Every epoch reseeds torch from
(seed, epoch), so a run resumed from an epoch's checkpoint continues bit-exactly on CPU; under
torchrun every rank draws that epoch's shuffle, then ranks after the first reseed from (seed,
epoch, rank), so their sampling noise is their own.

Update rules: most models have one parameter group minimising `loss`. A model with several
groups (VAE-GAN: encoder, decoder, discriminator) gives each group's loss in
LossOutput.group_losses; each group gets its own Adam and the gradient of its own loss only,
all from one forward pass.

Devices: the model and the whole data set (uint8, 47 MB for 60k images) move to the device once,
so a step only indexes device memory. Losses stay on the device and are looked at every
CHECK_EVERY steps, so a GPU is not made to wait for the host after every step; a NaN is still
named with the step it appeared at, and no checkpoint is written before that look. On a GPU,
a model with one optimizer has its whole step recorded as a CUDA graph and replayed
(cuda_graph.py); the epoch's shorter last batch, several optimizers and several ranks run eagerly.

Stages: a model may train its update groups in stages (Autoencoder.stages; vq-vae: its prior
after its autoencoder). In each stage only its groups get gradients and updates; the learning
rate's schedule runs over each stage's steps, and early stopping watches the last stage's
epochs only, since the earlier ones end by their own rule. A stage may end once a held-out
measure settles (stage_plan.py); the stage follows from the epoch number and the finished
epochs' history alone, so a resumed run picks up in the stage it was killed in.

Controls (controls.py): the learning rate and the KL warm-up's share are set before each step
from the global step alone, gradients are clipped per update group, and early stopping reads the
history; so a resumed run recomputes all of them from its checkpoint. The validation loss is
always taken at the full KL weight: it is the objective the run is judged by (best weights,
early stopping), whatever the warm-up has reached.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import overload

import torch
from tqdm.auto import tqdm

from aegen.data.pixels import to_model_range
from aegen.errors import ConfigError, TrainingError
from aegen.models.base import Autoencoder, Stage
from aegen.models.stage_plan import cooldown_factor, resolve, switch_note
from aegen.settings.evaluate import EVAL_BATCH
from aegen.settings.train import TrainSettings
from aegen.training import distributed
from aegen.training.adam import FusedAdam
from aegen.training.controls import epochs_without_gain, kl_factor, rate_factor
from aegen.training.cuda_graph import GraphedStep
from aegen.training.device import autocast, flushing_denormals, resolve_device
from aegen.training.threads import ThreadTuner, thread_candidates

CHECK_EVERY = 50  # steps between looks at the losses (each look waits for the device)


def preferred_memory_format(model: Autoencoder) -> torch.memory_format:
    """channels_last where the model asks for it. Measured per model (bench/fast_paths.py): it
    made conv-ae's epochs 1.1-1.2x faster on the CPU, conv-vae's 0.93x, vae-gan's within this
    machine's noise; so only conv-ae asks. Weights are saved in the usual layout all the same."""
    return torch.channels_last if model.channels_last else torch.contiguous_format


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of one epoch: shuffling and sampling noise depend on (seed, epoch) only."""
    return seed * 1_000_003 + epoch


def rank_noise_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of a torchrun rank's sampling noise after the shared shuffle (rank > 0): each
    rank's posterior draws, prior draws and probes must be independent of the others', not the
    same numbers (the epoch seed alone would give every rank rank 0's)."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_kl_warmup(model: Autoencoder, settings: TrainSettings) -> None:
    """A KL warm-up needs a KL term to warm up: refused in one line otherwise."""
    if settings.kl_warmup and not model.has_kl_term:
        raise ConfigError(
            "--kl-warmup needs a model whose loss has a KL term (has_kl_term: the VAEs, not "
            "the IWAE objective); this one has none"
        )


class Trainer:
    """Adam on model.loss over uint8 images [N, 28, 28] (and their labels, for conditional
    models); reports per-epoch train and validation loss. The model moves to `device` (auto: a
    GPU if there is one) and stays there. `config` holds the settings with the model's optimizer
    defaults filled in."""

    def __init__(
        self,
        model: Autoencoder,
        settings: TrainSettings,
        train_images: torch.Tensor,
        val_images: torch.Tensor,
        train_labels: torch.Tensor | None = None,
        val_labels: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
    ):
        settings.check()
        # The model's own optimizer defaults where the settings leave them open.
        batch = model.default_batch_size(len(train_images))
        config = settings.with_model_defaults(model.default_lr, model.default_weight_decay, batch)
        assert config.lr is not None and config.weight_decay is not None  # filled in just now
        assert config.batch_size is not None
        self.batch_size: int = config.batch_size
        self.lr, self.weight_decay = config.lr, config.weight_decay
        if model.conditional and (train_labels is None or val_labels is None):
            raise ConfigError("a conditional model needs the images' labels")
        check_kl_warmup(model, config)
        self.device = resolve_device(device)
        self.memory_format = preferred_memory_format(model)
        # torch's stubs lack Module.to(device, memory_format=...), which Module.to accepts.
        self.model = model.to(  # type: ignore[call-overload]
            self.device, memory_format=self.memory_format
        )
        self.config = config
        self.train_images, self.val_images = self._moved(train_images), self._moved(val_images)
        self.train_labels, self.val_labels = self._moved(train_labels), self._moved(val_labels)
        self.rank, self.world_size = distributed.world()
        self.groups = model.update_groups()
        self.planned = checked_stages(model.stages(config.epochs), self.groups, config.epochs)
        self.history: list[dict] = []  # the finished epochs' metrics, which resolve the stages
        self.stage_note: str | None = None  # a line for the log when a stage has just ended
        self._resolved: tuple[int, list[Stage]] = (-1, [])
        self.loss_module = distributed.loss_module(
            model, several_groups=len(self.groups) > 1, device=self.device
        )
        # One recorded step for the whole update where the update is one backward and one
        # Adam on one GPU (cuda_graph.py says why); several groups or ranks stay eager.
        graphed = (
            config.cuda_graphs
            and self.device.type == "cuda"
            and len(self.groups) == 1
            and self.world_size == 1
            and model.graphable
        )
        # The fused kernel updates all parameters in one pass instead of a dozen foreach ops,
        # without torch.optim's import of the compiler (adam.py). A recorded step reads the rate
        # from a tensor, so that the schedule can move it.
        self.optimizers = {
            name: FusedAdam(
                params,
                lr=torch.tensor(self.lr, device=self.device) if graphed else self.lr,
                betas=model.adam_betas,
                capturable=graphed,
                weight_decay=self.weight_decay,
            )
            for name, params in self.groups.items()
        }
        self.stop_reason: str | None = None  # why fit() ended before config.epochs, if it did
        # CPU threads per step (threads.py): on the CPU, chosen while training unless pinned.
        cpu = self.device.type == "cpu"
        self.tuner = ThreadTuner(
            thread_candidates(config.threads) if cpu else (torch.get_num_threads(),)
        )
        self.graphed_step = (
            GraphedStep(self._graphable_step, self._zero_grad, self.batch_size, self.device)
            if graphed
            else None
        )

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (under torchrun, a last batch smaller than the number
        of ranks is left out)."""
        full, rest = divmod(len(self.train_images), self.batch_size)
        return full + (1 if rest >= max(1, self.world_size) else 0)

    @property
    def warmup_steps(self) -> int:
        return self.config.kl_warmup * self.steps_per_epoch

    @property
    def stages(self) -> list[Stage]:
        """The planned stages as the finished epochs have resolved them (stage_plan.py); kept
        until another epoch finishes, since the learning rate asks at every step."""
        if self._resolved[0] != len(self.history):
            self._resolved = (
                len(self.history),
                resolve(self.planned, self.history, self.steps_per_epoch),
            )
        return self._resolved[1]

    def stage_of(self, epoch: int) -> Stage:
        """The stage 1-based `epoch` belongs to."""
        return next(s for s in self.stages if s.first <= epoch <= s.last)

    def rate(self, step: int) -> float:
        """The learning rate at 0-based global step `step` (the schedule spans its stage)."""
        epoch = step // self.steps_per_epoch + 1
        stage = self.stage_of(epoch)
        first, total = (stage.first - 1) * self.steps_per_epoch, stage.epochs * self.steps_per_epoch
        factor = rate_factor(self.config.lr_schedule, step - first, total)
        return self.lr * factor * cooldown_factor(stage, epoch, stage is self.stages[-1])

    def set_step(self, step: int) -> None:
        """Set the learning rate and the KL warm-up's share for 0-based global step `step`."""
        rate = self.rate(step)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(rate)
                else:
                    group["lr"] = rate
        if self.config.kl_warmup:
            self.model.kl_scale.fill_(kl_factor(step, self.warmup_steps))

    def after_checkpoint_loaded(self) -> None:
        """Put back what loading optimizer states replaces: the rate's tensor for a recorded
        step (a checkpoint stores a number) and whether Adam's state may be recorded."""
        graphed = self.graphed_step is not None
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = torch.tensor(self.lr, device=self.device) if graphed else self.lr
                group["capturable"] = graphed

    @overload
    def _moved(self, tensor: torch.Tensor) -> torch.Tensor: ...
    @overload
    def _moved(self, tensor: torch.Tensor | None) -> torch.Tensor | None: ...
    def _moved(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.to(self.device)

    def _batch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the model's input, in its value range and memory format."""
        x = to_model_range(images, self.model.value_range)
        return x.contiguous(memory_format=self.memory_format)

    def fit(
        self,
        start_epoch: int = 0,
        on_epoch_end: Callable[[dict], bool | None] | None = None,
        progress: bool | None = None,
        history: list[dict] | None = None,
    ) -> list[dict]:
        """Train epochs start_epoch+1 .. config.epochs; call on_epoch_end after each one (a true
        answer stops training there). `history` holds the finished epochs' metrics (a resumed
        run's), which early stopping counts from. Returns the new epochs' metrics;
        `stop_reason` says why training ended before config.epochs, if it did."""
        past = list(history or [])
        self.history, self._resolved = past, (-1, [])
        new: list[dict] = []
        self.stop_reason = None
        threads_before = torch.get_num_threads()
        try:
            self._fit(start_epoch, on_epoch_end, progress, past, new)
        finally:  # the caller's own thread count back, and every group trainable outside
            torch.set_num_threads(threads_before)
            self.model.training_groups = None
        return new

    def _fit(
        self,
        start_epoch: int,
        on_epoch_end: Callable[[dict], bool | None] | None,
        progress: bool | None,
        past: list[dict],
        new: list[dict],
    ) -> None:
        self.tuner.apply(self.tuner.current)
        for epoch in range(start_epoch + 1, self.config.epochs + 1):
            # Every rank stops together (each measured the validation loss on its own).
            if distributed.any_rank(self._patience_spent(past, epoch), self.device):
                break
            started = time.perf_counter()
            stage_index = self.stages.index(self.stage_of(epoch))
            metrics = {"epoch": epoch, **self.train_epoch(epoch, progress)}
            held_out = self.validation_loss(self.val_images, epoch, self.val_labels)
            broken = [k for k, v in held_out.items() if not math.isfinite(v)]
            if broken:  # the epoch's last updates broke the weights: commit nothing of it
                raise TrainingError(
                    f"the validation {broken[0]} became {held_out[broken[0]]} after epoch {epoch}; "
                    f"the learning rate ({self.lr}) is probably too high"
                )
            metrics.update({f"val_{k}": v for k, v in held_out.items()})
            metrics.update(self._controls_now(epoch))
            if len(self.planned) > 1:
                metrics["stage"] = stage_index + 1
            metrics["seconds"] = round(time.perf_counter() - started, 3)
            new.append(metrics)
            past.append(metrics)
            self.stage_note = switch_note(self.planned, self.stages, epoch, self.steps_per_epoch)
            stop = bool(on_epoch_end(metrics)) if on_epoch_end is not None else False
            if distributed.any_rank(stop, self.device):
                self.stop_reason = f"stopped by a callback after epoch {epoch}"
                break

    def _patience_spent(self, history: list[dict], epoch: int) -> bool:
        """Whether early stopping ends training before `epoch` (it sets stop_reason); only the
        last stage's finished epochs count."""
        patience, key = self.config.early_stop, self.model.selection_metric
        stage = self.stage_of(epoch)
        watched = history[stage.first - 1 :] if stage == self.stages[-1] else []
        waited = epochs_without_gain(watched, key) if watched else 0
        if not patience or waited < patience:
            return False
        what = "loss" if key == "loss" else f"{key.replace('_', ' ')} (the model's measure)"
        epochs = f"{patience} epoch{'s' if patience > 1 else ''}"
        self.stop_reason = (
            f"stopped early after epoch {len(history)}: the validation {what} has not fallen "
            f"below epoch {len(history) - waited}'s for {epochs}"
        )
        return True

    def _controls_now(self, epoch: int) -> dict[str, float]:
        """The learning rate and, for a model with a KL term, the effective KL weight at the
        epoch's last step (logged with its metrics)."""
        last = epoch * self.steps_per_epoch - 1
        values = {"lr": self.rate(last)}
        if self.model.has_kl_term:
            weight = float(getattr(self.model.config, "kl_weight", 1.0))
            values["kl_weight"] = weight * kl_factor(last, self.warmup_steps)
        return values

    def train_epoch(self, epoch: int, progress: bool | None = None) -> dict[str, float]:
        """One pass over the shuffled training images; returns mean loss and terms."""
        with flushing_denormals():
            return self._train_epoch(epoch, progress)

    def _train_epoch(self, epoch: int, progress: bool | None) -> dict[str, float]:
        torch.manual_seed(epoch_seed(self.config.seed, epoch))
        self.model.train()
        stage = self.stage_of(epoch)
        self.model.training_groups = stage.groups
        # The order is drawn on the CPU so that it is the same on every device.
        order = torch.randperm(len(self.train_images)).to(self.device)
        if self.rank > 0:  # the same order as rank 0, noise of its own
            torch.manual_seed(rank_noise_seed(self.config.seed, epoch, self.rank))
        batches = order.split(self.batch_size)
        if self.world_size > 1:  # each rank its slice of every global batch; none left empty
            batches = [
                b.tensor_split(self.world_size)[self.rank]
                for b in batches
                if len(b) >= self.world_size
            ]
        # tqdm's disable=None: a bar only on a terminal; other ranks never draw one.
        disable = True if self.rank != 0 else (None if progress is None else not progress)
        part = f" ({'+'.join(stage.groups)})" if len(self.stages) > 1 else ""
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{self.config.epochs}{part}",
            leave=False,
            disable=disable,
            unit="batch",
        )
        losses = StepLosses(epoch, self.lr)
        moving = self.config.lr_schedule != "constant" or self.config.kl_warmup > 0
        first = (epoch - 1) * self.steps_per_epoch
        if not moving:
            self.set_step(first)  # the rate a resumed run may have changed, and full KL weight
        self.tuner.resume()  # the steps' window, paused for the validation and saving
        for step, index in enumerate(bar, start=1):
            if moving:
                self.set_step(first + step - 1)
            if self.graphed_step is not None and self.graphed_step.fits(index):
                loss, terms = self.graphed_step(index)
                group_losses = None
            else:
                loss, terms, group_losses = self._step(index)
            losses.add(len(index), loss, terms, group_losses)
            self.tuner.step_done(len(index))
            if step % CHECK_EVERY == 0:
                bar.set_postfix(loss=f"{losses.check():.4g}", refresh=False)
        self.tuner.pause()
        losses.check()
        totals = distributed.sum_across_ranks(losses.totals, self.device)
        images = totals.pop("images")
        return {k: v / images for k, v in totals.items()}

    def _step(
        self, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Forward, backward and update on the training images at index; returns the losses."""
        x = self._batch(self.train_images[index])
        labels = self.train_labels[index] if self.train_labels is not None else None
        with autocast(self.device, self.config.precision):
            loss, terms, group_losses = self.loss_module(x, labels)
        self._zero_grad()
        training = self.model.training_groups or tuple(self.groups)
        if group_losses is None:
            loss.backward()
        else:
            self._backward_per_group(group_losses, training)
        if self.config.clip_grad is not None:
            for name in training:  # the global norm of each update group
                torch.nn.utils.clip_grad_norm_(
                    self.groups[name], self.config.clip_grad, foreach=True
                )
        for name in training:
            self.optimizers[name].step()
        return loss, terms, group_losses

    def _graphable_step(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step GraphedStep records: one optimizer, so there are no group losses."""
        loss, terms, _ = self._step(index)
        return loss, terms

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def _backward_per_group(
        self, group_losses: dict[str, torch.Tensor], names: tuple[str, ...] | None = None
    ) -> None:
        """Each training group's gradient (names: every group) from its own loss only (the
        model's update rule)."""
        names = tuple(self.groups) if names is None else names
        for i, name in enumerate(names):
            params = self.groups[name]
            grads = torch.autograd.grad(
                group_losses[name], params, allow_unused=True, retain_graph=i < len(names) - 1
            )
            for param, grad in zip(params, grads):
                # backward() lays a gradient out like its parameter, autograd.grad promises no
                # layout; the fused Adam misreads a channels_last parameter's other-layout grad.
                if grad is not None and grad.stride() != param.stride():
                    grad = torch.empty_like(param).copy_(grad)
                param.grad = grad
        if self.world_size > 1:
            distributed.average_gradients([p for name in names for p in self.groups[name]])

    @torch.no_grad()
    def validation_loss(
        self, images: torch.Tensor, epoch: int = 0, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Mean loss and terms on held-out images (noise seeded, so the number is repeatable)."""
        self.model.eval()
        self.model.kl_scale.fill_(1.0)  # the objective itself, whatever the warm-up's share
        gpus = [self.device.index] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=gpus), flushing_denormals():
            torch.manual_seed(epoch_seed(self.config.seed, -1 - epoch))
            totals: dict[str, float] = {}
            images, labels = self._moved(images), self._moved(labels)
            for index in torch.arange(len(images), device=self.device).split(EVAL_BATCH):
                x = self._batch(images[index])
                out = self.model.loss(x, labels[index] if labels is not None else None)
                n = len(index)
                totals["images"] = totals.get("images", 0.0) + n
                for name, value in {"loss": out.loss, **out.terms}.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * n
        count = totals.pop("images")
        return {k: v / count for k, v in totals.items()}


def checked_stages(stages: list[Stage], groups: dict, epochs: int) -> list[Stage]:
    """A model's stages, which must cover epochs 1..epochs in order and name its groups."""
    ends = [0, *(s.last for s in stages)]
    if [s.first for s in stages] != [e + 1 for e in ends[:-1]] or ends[-1] != epochs:
        raise ValueError(f"stages {stages} do not cover epochs 1-{epochs} in order")
    if any(s.epochs < 1 or not s.groups or set(s.groups) - set(groups) for s in stages):
        raise ValueError(f"stages {stages} name no or unknown update groups ({list(groups)})")
    return stages


class StepLosses:
    """Each step's losses, kept on the device until check() brings them over in one transfer,
    stops on the first non-finite one and adds the rest to the epoch's image-weighted totals."""

    def __init__(self, epoch: int, lr: float):
        self.epoch, self.lr = epoch, lr
        self.rows: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.names: list[str] = []
        self.reported = 0  # how many leading names the epoch's report keeps
        self.steps_done = 0
        self.totals: dict[str, float] = {"images": 0.0}

    def add(
        self,
        n: int,
        loss: torch.Tensor,
        terms: dict[str, torch.Tensor],
        group_losses: dict[str, torch.Tensor] | None,
    ) -> None:
        groups = group_losses or {}
        if not self.names:  # the report keeps loss and terms; group losses are only watched
            self.names = ["loss", *terms, *(f"{name} loss" for name in groups)]
            self.reported = 1 + len(terms)
        values = [loss, *terms.values(), *groups.values()]
        self.rows.append(torch.stack([v.detach().float() for v in values]))
        self.sizes.append(n)

    def check(self) -> float:
        """Bring the pending losses to the host; raise on a NaN; return the latest loss."""
        if not self.rows:
            return float("nan")
        values = torch.stack(self.rows).cpu().double()  # on the host: MPS has no float64
        broken = (~torch.isfinite(values)).nonzero()
        if len(broken):
            row, column = broken[0].tolist()
            raise TrainingError(
                f"the {self.names[column]} became {values[row, column].item()} at epoch "
                f"{self.epoch}, step {self.steps_done + row + 1}; the learning rate ({self.lr}) "
                "is probably too high or the data are out of range"
            )
        sizes = torch.tensor(self.sizes, dtype=torch.float64)
        sums = (values[:, : self.reported] * sizes[:, None]).sum(0).tolist()
        for name, value in zip(self.names, sums):
            self.totals[name] = self.totals.get(name, 0.0) + value
        self.totals["images"] += float(sizes.sum())
        self.steps_done += len(self.rows)
        self.rows, self.sizes = [], []
        return values[-1, 0].item()
