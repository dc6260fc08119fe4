"""Where aegen keeps what it downloads or trains once: data sets and the classifier judges."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$AEGEN_CACHE if set, else $XDG_CACHE_HOME/aegen, else ~/.cache/aegen (the XDG rule)."""
    if os.environ.get("AEGEN_CACHE"):
        return Path(os.environ["AEGEN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "aegen"
