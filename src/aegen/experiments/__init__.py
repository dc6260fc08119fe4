"""Documented experiments, end to end: each trains what it needs, measures, and writes its
tables, pictures and the hardware and time it took (`aegen experiment NAME`)."""

from typing import Any

EXPERIMENTS = ("can-ae-generate", "lossy-compression")


def data_root_setting(data_root: object) -> dict[str, Any]:
    """data_root as a train() keyword setting, left out when not given, so that a resumed
    experiment run keeps the root it recorded."""
    return {"data_root": str(data_root)} if data_root else {}
