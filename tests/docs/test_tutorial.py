"""The tutorial notebook runs top to bottom, offline: the article's three models trained on
mnist-5k, their reconstructions and samples, and the scores that answer 'can an autoencoder
generate?', with every run folder in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "tutorial.ipynb"


@pytest.mark.slow  # 2 minutes on an idle 2-core CPU, and 1.5 more to train the judge once
def test_the_tutorial_notebook_runs(tmp_path, shared_data, classifier_cache, monkeypatch):
    for package in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(package, reason=f"{package} is not installed: pip install -e '.[docs]'")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("AEGEN_DATA", str(shared_data))  # MNIST's test digits, the reference
    monkeypatch.setenv("AEGEN_CACHE", str(classifier_cache))  # the judge, trained once a session
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the notebook's tempfile puts its runs
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=1800,  # per cell: the judge trains in the scoring cell the first time
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error

    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    pictures = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert pictures >= 3, "the reconstructions, the samples and the codes are pictures"
    assert "real data" in printed
    for model in ("ae", "conv-ae", "vae"):
        for row in ("floor", "prior", "gmm"):
            assert f"{model}: {row}" in printed
        (run,) = tmp_path.glob(f"aegen-tutorial-*/{model}")
        assert (run / "scores.json").is_file()
