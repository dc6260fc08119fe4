"""aegen: generate data with autoencoders.

`aegen.train` (training/run.py), `aegen.load` (trained.py) and `aegen.evaluate`
(scoring/evaluate.py) load torch on first use, so that
`aegen --help` answers at once. `aegen.STOP` is what a training callback returns to end training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aegen.training.callbacks import STOP
from aegen.version import __version__

if TYPE_CHECKING:
    from aegen.scoring.evaluate import evaluate
    from aegen.trained import TrainedModel, load
    from aegen.training.run import train

__all__ = ["load", "train", "evaluate", "TrainedModel", "STOP", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("load", "TrainedModel"):
        from aegen import trained

        return getattr(trained, name)
    if name == "train":
        from aegen.training.run import train

        return train
    if name == "evaluate":
        from aegen.scoring.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'aegen' has no attribute {name!r}")
