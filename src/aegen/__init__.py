"""aegen: generate data with autoencoders.

`aegen.train`, `aegen.load` and `aegen.evaluate` (pipeline.py) load torch on first use, so that
`aegen --help` answers at once. `aegen.STOP` is what a training callback returns to end training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aegen.training.callbacks import STOP
from aegen.version import __version__

if TYPE_CHECKING:
    from aegen.pipeline import TrainedModel, evaluate, load, train

__all__ = ["load", "train", "evaluate", "TrainedModel", "STOP", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("load", "train", "evaluate", "TrainedModel"):
        from aegen import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'aegen' has no attribute {name!r}")
