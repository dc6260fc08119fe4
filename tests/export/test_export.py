"""`aegen export`: ONNX and TorchScript files of a run's encoder and decoder give aegen's own
codes and images (max |difference| <= 1e-4) at any batch size, outside aegen."""

from __future__ import annotations

import sys

import pytest
import torch

from aegen.cli import main
from aegen.errors import ConfigError
from aegen.export.networks import export_part
from aegen.training.run import load, train

QUIET = {"progress": False, "val_fraction": 0.5, "device": "cpu"}


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    return train("cvae", epochs=1, out=tmp_path_factory.mktemp("cvae") / "run", **QUIET)


def family_run(name, trained_runs, cvae_run):
    return cvae_run if name == "cvae" else trained_runs[name]


def fresh_inputs(trained, part, n=5):
    """Inputs of another batch size than the export's, and labels for a conditional model."""
    generator = torch.Generator().manual_seed(7)
    if part == "encoder":
        first = torch.rand(n, *trained.model.image_shape, generator=generator)
    else:
        first = torch.randn(n, trained.latent_dim, generator=generator)
    labels = torch.tensor([3, 1, 4, 1, 5][:n]) if trained.conditional else None
    return first, labels


def aegen_output(trained, part, first, labels):
    return trained.encode(first, labels) if part == "encoder" else trained.decode(first, labels)


@pytest.mark.parametrize("part", ["encoder", "decoder"])
@pytest.mark.parametrize("name", ["ae", "conv-ae", "vae", "cvae"])  # MLP, conv, VAE, conditional
def test_onnx_runs_in_onnxruntime_to_aegens_own_output(
    tmp_path, trained_runs, cvae_run, name, part
):
    onnxruntime = pytest.importorskip("onnxruntime", reason="needs aegen[test] (onnxruntime)")
    pytest.importorskip("onnxscript", reason="needs aegen[export] (onnx, onnxscript)")
    trained = load(family_run(name, trained_runs, cvae_run).run_dir)
    out = tmp_path / f"{part}.onnx"
    assert export_part(trained.model, part, "onnx", out) <= 1e-4
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    first, labels = fresh_inputs(trained, part)
    feeds = {session.get_inputs()[0].name: first.numpy()}
    if labels is not None:
        feeds["labels"] = torch.nn.functional.one_hot(labels, trained.classes).float().numpy()
    got = torch.from_numpy(session.run(None, feeds)[0])
    expected = aegen_output(trained, part, first, labels)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["conv-ae", "cvae"])
def test_torchscript_loads_without_aegen_to_its_own_output(tmp_path, trained_runs, cvae_run, name):
    trained = load(family_run(name, trained_runs, cvae_run).run_dir)
    for part in ("encoder", "decoder"):
        out = tmp_path / f"{part}.pt"
        export_part(trained.model, part, "torchscript", out)
        loaded = torch.jit.load(str(out))
        first, labels = fresh_inputs(trained, part)
        args = (first,) if labels is None else (first, torch.eye(trained.classes)[labels])
        with torch.no_grad():
            got = loaded(*args)
        assert (got - aegen_output(trained, part, first, labels)).abs().max().item() <= 1e-4


def test_the_cli_writes_the_decoder_into_the_run_and_says_how_close_it_is(trained_runs, capsys):
    pytest.importorskip("onnxscript", reason="needs aegen[export] (onnx, onnxscript)")
    run_dir = trained_runs["vae"].run_dir
    assert main(["export", str(run_dir), "--part", "decoder"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(run_dir / "decoder.onnx") and (run_dir / "decoder.onnx").is_file()
    assert "vae decoder (best weights): largest difference from aegen's own output" in lines[1]
    (run_dir / "decoder.onnx").unlink()  # the shared run stays as the other tests expect it


def test_bad_requests_are_one_line_and_write_nothing(tmp_path, trained_runs, capsys, monkeypatch):
    model = load(trained_runs["ae"].run_dir).model
    with pytest.raises(ConfigError, match="unknown format 'tflite'"):
        export_part(model, "decoder", "tflite", tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown part 'middle'"):
        export_part(model, "middle", "onnx", tmp_path / "x")
    missing = tmp_path / "no-such-folder" / "decoder.pt"
    assert (
        main(
            [
                "export",
                str(trained_runs["ae"].run_dir),
                "--format",
                "torchscript",
                "--out",
                str(missing),
            ]
        )
        == 2
    )
    assert "its folder" in capsys.readouterr().err and not missing.parent.exists()
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as where aegen[export] is missing
    with pytest.raises(ConfigError, match=r"pip install 'aegen\[export\]'"):
        export_part(model, "decoder", "onnx", tmp_path / "decoder.onnx")
    assert list(tmp_path.iterdir()) == []
