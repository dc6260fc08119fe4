"""How much memory this machine has free: what a training's inputs and model are sized against
before anything is allocated (data/own_images.py, training/model_for_data.py)."""

from __future__ import annotations

import os
from pathlib import Path


def free_memory() -> int:
    """Bytes free: Linux's MemAvailable; elsewhere the physical memory; 2**62 where neither is
    known (no bound)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62
