"""Shared fixtures: the real data root (skipped when absent) and small trained runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AEGEN_TEST_DATA", PROJECT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST test set and Fashion-MNIST in torchvision's raw layout, or a skip."""
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (the development machines' ../shared/data; "
            "set AEGEN_TEST_DATA to a folder in torchvision's raw layout)"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Tests never download into the user's cache: the default root is an empty temp folder."""
    monkeypatch.setenv("AEGEN_DATA", str(tmp_path_factory.mktemp("empty-data-root")))


class _WritesAFile:
    """Unpickling this creates the file named by `target`."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def malicious_pickle():
    """Bytes of a pickle that would create the given file if anything unpickled it."""
    import pickle

    return lambda target: pickle.dumps(_WritesAFile(str(target)))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict:
    """One briefly trained run folder per reference model (shared by the read-only tests)."""
    from aegen.training.run import train

    root = tmp_path_factory.mktemp("runs")
    return {
        name: train(name, "mnist-5k", epochs=2, out=root / name, progress=False)
        for name in ("ae", "conv-ae", "vae")
    }


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory) -> Path:
    """One temporary classifier cache per test session, so the slow tests train each judge once."""
    return tmp_path_factory.mktemp("classifier-cache")
