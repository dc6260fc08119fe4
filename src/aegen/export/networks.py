"""`aegen export`: a run's encoder or decoder as an ONNX or TorchScript file that runs without
aegen (onnxruntime, or torch.jit.load), with aegen's own pixel convention built in.

The exported encoder takes float images [N, C, H, W] in [0, 1] and gives codes [N, latent_dim]
(a VAE's posterior mean); the decoder takes codes and gives images in [0, 1], as
TrainedModel.encode and decode do. A conditional model's part takes a second input, `labels`:
class weights [N, classes] (one-hot rows for plain labels). The batch size is free.

Each file is checked before it is put in place: it is loaded back and run on seeded inputs, and
its output must agree with aegen's own within TOLERANCE (onnxruntime, when installed, runs the
ONNX file; else only the ONNX checker looks at it). It is then written as every aegen file is
(store/atomic.py): in full or not at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from aegen.errors import ConfigError
from aegen.files.atomic import write_atomic
from aegen.models.base import Autoencoder

FORMATS = ("onnx", "torchscript")
PARTS = ("encoder", "decoder")
TOLERANCE = 1e-4  # largest |difference| from aegen's own output that a file may show
CHECK_BATCH = 16


class _Part(nn.Module):
    """One half of a model, in aegen's pixel convention ([0, 1]) rather than the model's."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model
        self.low, self.high = model.value_range


class EncoderPart(_Part):
    """Images in [0, 1] (and class weights) -> codes."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode(images * (self.high - self.low) + self.low, labels)


class DecoderPart(_Part):
    """Codes (and class weights) -> images in [0, 1]."""

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = self.model.decode(codes, labels)
        return ((images - self.low) / (self.high - self.low)).clamp(0.0, 1.0)


def part_module(model: Autoencoder, part: str) -> nn.Module:
    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}: use encoder or decoder")
    return (EncoderPart if part == "encoder" else DecoderPart)(model).eval()


def example_inputs(model: Autoencoder, part: str, n: int = CHECK_BATCH) -> tuple[torch.Tensor, ...]:
    """Seeded inputs of the part: images in [0, 1] or N(0, I) codes, and one-hot labels."""
    generator = torch.Generator().manual_seed(0)
    if part == "encoder":
        first = torch.rand(n, *model.image_shape, generator=generator)
    else:
        first = torch.randn(n, model.latent_dim, generator=generator)
    if not model.conditional:
        return (first,)
    labels = torch.nn.functional.one_hot(torch.arange(n) % model.num_classes, model.num_classes)
    return first, labels.float()


def input_names(model: Autoencoder, part: str) -> list[str]:
    first = "images" if part == "encoder" else "codes"
    return [first, "labels"] if model.conditional else [first]


def export_part(model: Autoencoder, part: str, fmt: str, out: Path) -> float | None:
    """Write the part as an ONNX or TorchScript file at out (atomically, after checking it);
    return the largest |difference| from aegen's own output on the check inputs (None: an ONNX
    file that only ONNX's checker could look at, onnxruntime not being installed)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: use onnx or torchscript")
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: its folder {out.parent} does not exist")
    module = part_module(model.cpu().float(), part)
    inputs = example_inputs(model, part)
    with torch.no_grad():
        expected = module(*inputs)
    with tempfile.TemporaryDirectory() as folder:
        temporary = Path(folder) / f"{part}.{fmt}"
        if fmt == "onnx":
            _write_onnx(module, inputs, input_names(model, part), temporary)
            difference = _onnx_difference(temporary, inputs, input_names(model, part), expected)
        else:
            with warnings.catch_warnings():  # torch.jit's deprecation notice: the file still runs
                warnings.simplefilter("ignore")
                torch.jit.save(torch.jit.trace(module, inputs), str(temporary))
                loaded = torch.jit.load(str(temporary))
            with torch.no_grad():
                difference = (loaded(*inputs) - expected).abs().max().item()
        if difference is not None and not difference <= TOLERANCE:
            raise ConfigError(
                f"the exported {part} differs from aegen's own by {difference:.3g} "
                f"(more than {TOLERANCE:g}); nothing was written"
            )
        write_atomic(out, temporary.read_bytes())
    return difference


def _write_onnx(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path
) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it, and onnxscript, to write the file)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError(
            "exporting to ONNX needs the onnx and onnxscript packages: pip install 'aegen[export]'"
        ) from None
    # The inputs' names are forward()'s argument names; their first dimension is free.
    batch = torch.export.Dim("batch")
    dynamic_shapes = {name: {0: batch} for name in names}
    # torch.onnx prints its progress and warns about its own internals: neither is the user's.
    with warnings.catch_warnings(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=names,
            output_names=["codes" if isinstance(module, EncoderPart) else "images"],
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
        )


def _onnx_difference(
    path: Path, inputs: tuple[torch.Tensor, ...], names: list[str], expected: torch.Tensor
) -> float | None:
    """Run the file in onnxruntime (where installed) on the inputs; else only check it."""
    import onnx

    onnx.checker.check_model(str(path))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy() for name, tensor in zip(names, inputs)}
    got = torch.from_numpy(session.run(None, feeds)[0])
    return (got - expected).abs().max().item()
