"""`aegen export RUN_DIR`: a run's encoder or decoder as an ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from pathlib import Path

from aegen.cli.arguments import add_eval_flag, run_argument, writer_of

SUMMARY = "write a run's encoder or decoder as an ONNX or TorchScript file"
DESCRIPTION = (
    "Write a run's encoder (images in [0, 1] -> codes) or decoder (codes -> images in "
    "[0, 1]) as a file that runs without aegen: ONNX (onnxruntime and other runtimes) or "
    "TorchScript (torch.jit.load). A conditional model's part takes a second input, "
    "labels: class weights [N, classes]. The file is run once against aegen's own "
    "output before it is put in place."
)


def add_arguments(command: argparse.ArgumentParser) -> None:
    run_argument(command)
    command.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="default onnx"
    )
    command.add_argument(
        "--part", choices=("encoder", "decoder"), default="decoder", help="default decoder"
    )
    command.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="default RUN_DIR/PART.onnx (or PART.pt for TorchScript)",
    )
    add_eval_flag(command, "weights")


def run(args: argparse.Namespace) -> None:
    from aegen.export.networks import export_part
    from aegen.training.run import load

    trained = load(args.run, weights=args.weights)
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    out = args.out or args.run / f"{args.part}{suffix}"
    with writer_of(args.run, out):
        difference = export_part(trained.model, args.part, args.format, out)
    print(out)
    checked = (
        f"largest difference from aegen's own output {difference:.2g}"
        if difference is not None
        else "checked by ONNX's checker only (install onnxruntime to run it against aegen's)"
    )
    print(f"{trained.name} {args.part} ({trained.weights} weights): {checked}")
