"""Callbacks: the Python API's hook into training, after each epoch is committed to the run
folder. A notebook can plot live, log to another tracker or stop training on its own rule.

    def watch(run, epoch, metrics):          # a plain function, or an object with
        print(epoch, metrics["val_loss"])    # an on_epoch_end(run, epoch, metrics) method
        if metrics["val_loss"] < 100:
            return aegen.STOP                # ends training cleanly after this epoch

    aegen.train("vae", epochs=50, callbacks=[watch])

`run` is a TrainedModel of the epoch's weights: a copy on the CPU, so sampling or encoding
from it leaves the training untouched. Only aegen.STOP stops; any other answer is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from aegen.errors import ConfigError


class _Stop:
    """The answer that ends training: one object, so no other value stops it by accident."""

    def __repr__(self) -> str:
        return "aegen.STOP"


STOP = _Stop()


@runtime_checkable
class Callback(Protocol):
    def on_epoch_end(self, run: Any, epoch: int, metrics: dict[str, float]) -> Any: ...


EpochHook = Callable[[Any, int, dict[str, float]], Any]


def epoch_hooks(callbacks: Sequence[Callback | EpochHook] | None) -> list[EpochHook]:
    """Each callback as a function (run, epoch, metrics); anything else is one clear line."""
    hooks: list[EpochHook] = []
    for callback in callbacks or ():
        if isinstance(callback, Callback):
            hooks.append(callback.on_epoch_end)
        elif callable(callback):
            hooks.append(callback)
        else:
            raise ConfigError(
                f"a callback must be a function (run, epoch, metrics) or have an "
                f"on_epoch_end(run, epoch, metrics) method, got {type(callback).__name__}"
            )
    return hooks


def call_hooks(hooks: list[EpochHook], run: Any, epoch: int, metrics: dict[str, float]) -> bool:
    """Call every hook (all of them, even after one asked to stop); whether one returned STOP."""
    answers = [hook(run, epoch, dict(metrics)) for hook in hooks]
    return any(answer is STOP for answer in answers)
