"""One run folder as an object: made by training, continued by a resume, an epoch committed
at a time, opened by `aegen.load`.

An epoch is committed in one step: checkpoint.safetensors is replaced atomically and is the
single source of truth; model.safetensors, model-best.safetensors and history.jsonl are then
derived from it, and derived again whenever the run resumes, so a kill at any point converges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from aegen.errors import ConfigError, RunError
from aegen.runs.checkpoint import BestWeights, Optimizer, load_checkpoint, save_checkpoint
from aegen.runs.config import RunConfig, read_run_config, write_run_config
from aegen.runs.folder import BEST_WEIGHTS, CHECKPOINT, WEIGHTS, read_history, write_history
from aegen.runs.weights import save_best_weights, save_weights
from aegen.settings.evaluate import WEIGHTS as WEIGHT_CHOICES


class RunFolder:
    """A run folder and its config; training commits epochs into it through this object.

    writes: False for the processes of a torchrun job other than rank 0, which keep the same
    record of epochs and best weights but write nothing."""

    def __init__(self, path: Path, config: RunConfig, writes: bool = True):
        self.path, self.config, self.writes = Path(path), config, writes
        self.history: list[dict] = []
        self.best: BestWeights | None = None
        self.committed = 0  # the epochs the checkpoint on disk holds
        self.config_pending = False  # a resume's settings: written with its first epoch

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder (its config checked), for reading."""
        return cls(Path(path), read_run_config(Path(path)))

    @classmethod
    def create(cls, path: Path, config: RunConfig, writes: bool = True) -> RunFolder:
        """Write config.json into path (call with the folder's lock held, which removed the
        temporary files of killed writers): fails before any training when the folder cannot
        be written."""
        folder = cls(path, config, writes)
        if writes:
            try:
                write_run_config(path, config)
            except OSError as exc:
                raise RunError(
                    f"cannot write the run folder {path} ({exc.strerror or exc})"
                ) from exc
        return folder

    @classmethod
    def continued(cls, path: Path, config: RunConfig, writes: bool = True) -> RunFolder:
        """A run to resume (its lock held) with these settings: config.json keeps the old ones
        until the first new epoch is committed, so a resume that fails first changes nothing."""
        folder = cls(path, config, writes)
        if writes:
            folder.config_pending = read_run_config(path) != config
        return folder

    @property
    def model(self) -> str:
        return self.config.model

    def has_checkpoint(self) -> bool:
        return os.path.lexists(self.path / CHECKPOINT)

    def check_resumable(self) -> None:
        """Refuse a folder whose history outlived its checkpoint: nothing to continue from."""
        if not self.has_checkpoint() and read_history(self.path):
            raise RunError(
                f"{self.path} has a training history but no {CHECKPOINT}: the run cannot be "
                "continued; train a new run with --out elsewhere"
            )

    def resume(self, net: torch.nn.Module, optimizers: Mapping[str, Optimizer]) -> int:
        """Load the checkpoint into net and optimizers and derive the other files from it again;
        returns the finished epochs (0 when no epoch had finished)."""
        if not self.has_checkpoint():
            return 0
        start, self.history, self.best = load_checkpoint(self.path, net, self.model, optimizers)
        self.committed = start
        if self.writes:  # left byte for byte as they are where they already agree
            save_weights(self.path, net, self.model, again=True)
            if self.best is not None:
                best = self.best
                save_best_weights(self.path, best.state, best.epoch, self.model, again=True)
            write_history(self.path, self.history)
        return start

    def commit_epoch(
        self,
        net: torch.nn.Module,
        optimizers: Mapping[str, Optimizer],
        metrics: dict,
        selection_metric: str,
    ) -> dict:
        """Record a finished epoch: its metrics, the best weights if it beats every earlier
        epoch on selection_metric, and (where this process writes) the checkpoint and the files
        derived from it. Returns the metrics as the history keeps them."""
        if self.history and set(metrics) != set(self.history[0]):  # begun by an older aegen
            metrics = {k: v for k, v in metrics.items() if k in self.history[0]}
        epoch = metrics["epoch"]
        # A checkpoint of an aegen that kept no best weights: they start with the first epoch
        # that beats every finished one (until then `load` takes the last weights).
        bar = min((m[selection_metric] for m in self.history), default=math.inf)
        if self.best is not None:
            bar = self.history[self.best.epoch - 1][selection_metric]
        if metrics[selection_metric] < bar:
            self.best = BestWeights.of(net, epoch)
        self.history.append(metrics)
        if not self.writes:
            return metrics
        save_checkpoint(self.path, net, self.model, optimizers, epoch, self.history, self.best)
        self.committed = epoch
        if self.config_pending:  # after the checkpoint: a kill between the two keeps the old
            write_run_config(self.path, self.config)  # settings, which the next resume reads
            self.config_pending = False
        save_weights(self.path, net, self.model)
        if self.best is not None and self.best.epoch == epoch:
            save_best_weights(self.path, self.best.state, self.best.epoch, self.model)
        write_history(self.path, self.history)
        return metrics

    def what_is_kept(self) -> str:
        """What a stopped run leaves, for its last message."""
        finished = self.committed
        if finished == 0:
            return (
                f"no epoch had finished, so {self.path} holds no checkpoint: `--resume` starts "
                "the run again from its first step"
            )
        return (
            f"{self.path} keeps epoch{'s 1-' if finished > 1 else ' '}{finished}: `--resume` "
            "continues from there"
        )

    def weights_path(self, weights: str | None) -> tuple[Path, str]:
        """The weights file to load and which it is: "best", "last", or None for the best
        where the run has them (runs of an aegen that kept none have only the last)."""
        if weights not in (None, *WEIGHT_CHOICES):
            raise ConfigError(f"unknown weights {weights!r}: use {' or '.join(WEIGHT_CHOICES)}")
        if weights is None:
            weights = "best" if os.path.lexists(self.path / BEST_WEIGHTS) else "last"
        path = self.path / (BEST_WEIGHTS if weights == "best" else WEIGHTS)
        if weights == "best" and not os.path.lexists(path):
            raise RunError(
                f"{self.path} has no {BEST_WEIGHTS} (an older aegen trained it, or no epoch "
                "has finished yet); use the last weights (--weights last)"
            )
        return path, weights
