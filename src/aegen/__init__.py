"""aegen: generate data with autoencoders.

Heavy modules (torch, matplotlib) load on first use so that `aegen --help` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aegen.api import TrainedModel, load, train

__all__ = ["load", "train", "TrainedModel", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("load", "train", "TrainedModel"):
        from aegen import api
        return getattr(api, name)
    raise AttributeError(f"module 'aegen' has no attribute {name!r}")
