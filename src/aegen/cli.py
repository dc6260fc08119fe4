"""The `aegen` command: parses arguments, calls the library, prints. Errors a user can cause
print one line and exit with status 2.

torch loads only inside the commands (and for `aegen train --help`, whose help names each
model's optimizer defaults), and the settings, logging and dataclasses only for the commands
that use them, so `aegen --help` answers at once (as fast as before they existed).
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aegen.errors import AegenError, ConfigError, Interrupted
from aegen.version import __version__

if TYPE_CHECKING:
    import dataclasses
    from collections.abc import Callable

TRAIN_EXAMPLES = """examples:
  aegen train vae                                  # the article's VAE, 10 epochs on mnist-5k
  aegen train ae --epochs 50 --out runs/my-ae      # the 3-d autoencoder, into a chosen folder
  aegen train vae --option latent_dim=2 --option kl_weight=4   # a 2-d beta-VAE
  aegen train conv-vae --dataset fashion-mnist --data-root ../shared/data --device cuda
  aegen train vae --epochs 20 --out runs/vae-mnist-5k --resume   # continue a run to epoch 20
  aegen train cvae --config settings.json --seed 3   # settings from a JSON file; flags win

Every model and its options: `aegen models`. Settings a resumed run may change: {resumable}."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


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


def _setting_parser(spec: dataclasses.Field) -> Any:
    """The argparse type of a setting: its kind, then the bounds TrainSettings declares."""
    from aegen.training.settings import check_value, value_kind

    kind = value_kind(spec)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            check_value(spec, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def _nll_k_argument(command: argparse.ArgumentParser) -> None:
    """--nll-k, as `evaluate` and `score` take it."""
    command.add_argument(
        "--nll-k",
        type=_positive_int,
        default=1000,
        help="importance samples per image for the VAE's NLL (default 1000)",
    )


def setting_flag(name: str) -> str:
    """The `aegen train` flag of a setting."""
    from aegen.training.settings import SETTINGS

    return SETTINGS[name].metadata["flag"] or "--" + name.replace("_", "-")


def _setting_help(name: str, model_defaults: dict[str, dict[str, float]] | None) -> str:
    """A setting's meaning and its real default (per model for the optimizer's defaults)."""
    from aegen.training.settings import SETTINGS, value_kind

    spec = SETTINGS[name]
    meaning = spec.metadata["meaning"]
    if name in ("lr", "weight_decay"):
        if model_defaults is None:
            return f"{meaning} (default: the model's own; `aegen train MODEL --help` lists them)"
        by_value: dict[float, list[str]] = {}
        for model, defaults in model_defaults.items():
            by_value.setdefault(defaults[name], []).append(model)
        listed = "; ".join(
            f"{value:g} for {', '.join(models)}" for value, models in by_value.items()
        )
        return f"{meaning} (default: {listed})"
    if value_kind(spec) is bool:  # said as what the default does, and what the flag changes
        if spec.default:
            return f"{meaning} (default: on; {setting_flag(name)} turns it off)"
        return f"{meaning} (default: off)"
    if value_kind(spec) is dict or spec.default is None:
        return meaning
    return f"{meaning} (default: {spec.default})"


def _add_setting_flags(
    command: argparse.ArgumentParser, model_defaults: dict[str, dict[str, float]] | None
) -> None:
    """One flag per TrainSettings field; a flag not given stays None so that a --config file or
    a resumed run's recorded value is kept."""
    from aegen.training.settings import SETTINGS, value_kind

    for name, spec in SETTINGS.items():
        kind, flag, help_text = (
            value_kind(spec),
            setting_flag(name),
            _setting_help(name, model_defaults),
        )
        meta = spec.metadata
        if kind is bool and spec.default:  # the flag turns it off
            command.add_argument(flag, dest=name, action="store_const", const=False, help=help_text)
        elif kind is bool:  # --NAME turns it on, --no-NAME off (a resumed run may want either)
            command.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif kind is dict:
            command.add_argument(
                flag,
                dest=name,
                type=_option,
                action="append",
                metavar=meta["metavar"],
                help=help_text,
            )
        else:
            metavar = meta["metavar"] or (
                "{" + ",".join(map(str, meta["choices"])) + "}"
                if meta["choices"]
                else {int: "N", float: "X"}.get(kind, name.upper())
            )
            command.add_argument(
                flag, dest=name, type=_setting_parser(spec), metavar=metavar, help=help_text
            )


def model_optimizer_defaults() -> dict[str, dict[str, float]]:
    """Each preset's declared learning rate and weight decay (imports the models, so torch)."""
    from aegen.models import PRESETS

    return {
        name: {
            "lr": entry.model_class.default_lr,
            "weight_decay": entry.model_class.default_weight_decay,
        }
        for name, entry in PRESETS.items()
    }


def _train_examples() -> str:
    from aegen.training.settings import RESUMABLE

    return TRAIN_EXAMPLES.format(resumable=", ".join(RESUMABLE))


def _run_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "run", type=Path, metavar="RUN_DIR", help="a run folder `aegen train` wrote"
    )


def _weights_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--weights",
        choices=("best", "last"),
        help="the run's best weights (lowest validation loss, model-best.safetensors) or its "
        "last epoch's (model.safetensors); default: the best where the run has them",
    )


def _data_root_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="where the run's built-in data set lies, if not where it was trained from "
        "(a folder or array of your own is read from the path the run recorded)",
    )


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other mistake is (argparse
    prints the whole usage block first); --help still gives it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser(
    model_defaults: dict[str, dict[str, float]] | None = None, train_flags: bool = True
) -> argparse.ArgumentParser:
    """The whole command line. model_defaults (see model_optimizer_defaults) puts each model's
    learning rate and weight decay into `aegen train --help`; train_flags=False leaves out
    the settings' flags, which only `aegen train` parses (it spares the other commands and
    `aegen --help` the settings' import)."""
    parser = OneLineParser(
        prog="aegen",
        description="Train autoencoders, rebuild images and generate new ones; "
        "measure how good the generated images are.",
    )
    parser.add_argument("--version", action="version", version=f"aegen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, summary: str, description: str = "", **kwargs: Any
    ) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=description or summary[0].upper() + summary[1:] + ".",
            **kwargs,
        )

    train = command(
        "train",
        "train a model and write its run folder",
        textwrap.fill(
            "Train a model preset and write its run folder (config.json, weights, "
            "checkpoint, history.jsonl, pictures). Settings come from their defaults, "
            "then --config FILE, then the flags given.",
            79,
        ),
        epilog=_train_examples() if train_flags else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "model",
        metavar="MODEL",
        help="ae, conv-ae, vae, beta-vae, iwae, conv-vae, cvae, vae-gan, rae, wae, aae, vamp or "
        "vq-vae "
        "(see `aegen models`)",
    )
    train.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of settings keyed by their names (dataset, epochs, "
        "batch_size, lr, model_options, ...); flags given beside it win",
    )
    if train_flags:
        _add_setting_flags(train, model_defaults)
    train.add_argument(
        "--out",
        type=Path,
        metavar="RUN_DIR",
        help="run folder (default runs/MODEL-DATASET, numbered if taken)",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")

    sample = command(
        "sample",
        "generate new images from a trained run",
        "Decode codes drawn by a latent sampler into new images.",
    )
    _run_argument(sample)
    sample.add_argument("-n", type=_positive_int, default=64, help="how many images (default 64)")
    sample.add_argument("--seed", type=_int, default=0, help="seeds the draws (default 0)")
    sample.add_argument(
        "--sampler",
        help="prior, gaussian, gmm, gmm-K, flow, diffusion, diffusion-N (N ODE steps), "
        "two-stage or, for ldm, prior-N (its prior in N steps); the fitted ones are fitted "
        "to the training codes once and saved in the run "
        "(default: prior for a model trained to match it (VAEs, wae, aae) or with a learned "
        "one (vamp's mixture, vq-vae's PixelCNN, ldm's flow), gmm for rae, gaussian for a "
        "plain autoencoder)",
    )
    sample.add_argument(
        "--label",
        type=_int,
        help="the class to generate (conditional models, e.g. cvae, and ldm on labelled "
        "data); default: cvae draws classes uniformly, ldm as often as the training labels",
    )
    sample.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .png grid, .npy or .pt file (default RUN_DIR/samples-SAMPLER-seedN.png)",
    )
    _weights_argument(sample)
    _data_root_argument(sample)

    for name, summary in (
        ("reconstruct", "rebuild held-out images through the code"),
        ("encode", "write the codes and labels of held-out images"),
    ):
        sub = command(name, summary)
        _run_argument(sub)
        sub.add_argument(
            "--split",
            choices=("val", "test", "train"),
            default="val",
            help="which images: the run's validation split (default), the "
            "data set's test set, or the training split",
        )
        sub.add_argument(
            "--out",
            type=Path,
            metavar="FILE",
            help="a .png, .npy or .pt file (default RUN_DIR/reconstructions-SPLIT.png)"
            if name == "reconstruct"
            else "an .npz or .pt file (default RUN_DIR/codes-SPLIT.npz)",
        )
        _weights_argument(sub)
        _data_root_argument(sub)
    commands.choices["reconstruct"].add_argument(
        "-n", type=_positive_int, default=24, help="how many images (default 24)"
    )

    pictures = command(
        "pictures",
        "(re)draw a run's pictures: reconstructions, samples, latent "
        "scatter, interpolations, manifold (2-d codes), loss curves",
    )
    _run_argument(pictures)
    _data_root_argument(pictures)

    evaluate = command(
        "evaluate",
        "score reconstructions, likelihoods and samples (writes RUN_DIR/scores.json)",
        "Score a run on its data set's test split (for your own images: the run's held-out "
        "images): reconstruction error, "
        "importance-sampled NLL (VAEs), and FD-aegen, precision, recall and label "
        "coverage of each sampler's samples, judged by aegen's own classifier.",
    )
    _run_argument(evaluate)
    evaluate.add_argument(
        "--sampler",
        action="append",
        dest="samplers",
        metavar="NAME",
        help="prior, gaussian, gmm, gmm-K, flow, diffusion, diffusion-N, two-stage or prior-N "
        "(ldm) (repeatable; default prior, gaussian and gmm: the learned ones take a minute each "
        "to fit)",
    )
    evaluate.add_argument(
        "--n-samples",
        type=_positive_int,
        metavar="N",
        help="samples drawn per sampler (default: as many as the reference has images, at "
        "least 1,000 and at most 10,000, and no more than the training split holds; the real "
        "data and floor rows score as many)",
    )
    evaluate.add_argument(
        "--nll-k",
        type=_positive_int,
        metavar="K",
        help="importance samples per image for the VAE's NLL (default: the most of 1000, 500, "
        "200, 100 whose decoded draws stay within the images the training saw)",
    )
    evaluate.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="CPU threads torch may use (default: every usable core)",
    )
    evaluate.add_argument("--seed", type=_int, default=0, help="seeds every draw (default 0)")
    _weights_argument(evaluate)
    _data_root_argument(evaluate)

    score = command(
        "score",
        "write each image's reconstruction error and, for VAEs, ELBO and NLL (CSV or JSON)",
        "Score every image of IMAGES one by one, to tell images unlike the run's training "
        "data apart (foreign-data detection): the reconstruction error (mean squared, pixels "
        "in [0, 1]) and, for VAEs, the ELBO and the importance-sampled NLL in nats. Images "
        "of another size or channel count are first brought to the run's.",
    )
    _run_argument(score)
    score.add_argument(
        "images",
        metavar="IMAGES",
        help="a built-in data set's name (its test split: mnist, fashion-mnist, mnist-5k) "
        "or a folder of images or a .npy/.npz array (all its images)",
    )
    score.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .csv or .json file (default RUN_DIR/scores-NAME.csv, NAME the data set's, "
        "folder's or array file's name)",
    )
    _nll_k_argument(score)
    score.add_argument("--seed", type=_int, default=0, help="seeds the NLL's draws (default 0)")
    _weights_argument(score)
    score.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="where the built-in data set IMAGES names lies (default: the run's recorded "
        "data root, else AEGEN_DATA or aegen's cache)",
    )

    export = command(
        "export",
        "write a run's encoder or decoder as an ONNX or TorchScript file",
        "Write a run's encoder (images in [0, 1] -> codes) or decoder (codes -> images in "
        "[0, 1]) as a file that runs without aegen: ONNX (onnxruntime and other runtimes) or "
        "TorchScript (torch.jit.load). A conditional model's part takes a second input, "
        "labels: class weights [N, classes]. The file is run once against aegen's own "
        "output before it is put in place.",
    )
    _run_argument(export)
    export.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="default onnx"
    )
    export.add_argument(
        "--part", choices=("encoder", "decoder"), default="decoder", help="default decoder"
    )
    export.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="default RUN_DIR/PART.onnx (or PART.pt for TorchScript)",
    )
    _weights_argument(export)

    compare = command(
        "compare",
        "tabulate and picture evaluated runs",
        "Write comparison.md, comparison.json and comparison.png of evaluated runs.",
    )
    compare.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="run folders `aegen evaluate` has scored",
    )
    compare.add_argument(
        "--out",
        type=Path,
        default=Path("comparison"),
        metavar="DIR",
        help="folder for the table and picture (default comparison)",
    )

    experiment = command(
        "experiment",
        "run a documented experiment end to end",
        "Train, measure and compare models on one data set; tables, pictures, hardware and "
        "time go into --out.",
    )
    experiment.add_argument(
        "name",
        choices=("can-ae-generate", "lossy-compression"),
        help="can-ae-generate: can an autoencoder generate? ae, conv-ae and vae with every "
        "sampler; lossy-compression: rate and distortion against PCA and JPEG, in-domain and on "
        "the other data set, and how well reconstruction error and likelihood spot foreign images",
    )
    experiment.add_argument(
        "--dataset", default="mnist-5k", help="mnist-5k (default), mnist or fashion-mnist"
    )
    experiment.add_argument(
        "--data-root", type=Path, metavar="DIR", help="folder in torchvision's raw layout"
    )
    experiment.add_argument(
        "--epochs",
        type=_positive_int,
        help="epochs per model (default: can-ae-generate 100 on mnist-5k, 5 otherwise; "
        "lossy-compression 30 on mnist-5k, 5 otherwise)",
    )
    experiment.add_argument(
        "--n-samples",
        type=_positive_int,
        default=10_000,
        help="samples per sampler (default 10000; can-ae-generate)",
    )
    experiment.add_argument(
        "--nll-k",
        type=_positive_int,
        help="importance samples per image for the NLL (default: can-ae-generate 1000, "
        "lossy-compression 100)",
    )
    experiment.add_argument(
        "--out", type=Path, metavar="DIR", help="default experiments/NAME-DATASET"
    )

    report = command("report", "write one self-contained HTML page of runs (several: side by side)")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders to show")
    report.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="HTML file (default RUN_DIR/report.html, or report.html for several)",
    )

    explore = command("explore", "serve a local page to move through a run's latent space live")
    _run_argument(explore)
    explore.add_argument(
        "--port", type=_port, default=8765, help="default 8765; 0 picks a free one"
    )
    explore.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    _data_root_argument(explore)

    command("models", "list the model presets with their options and defaults")
    return parser


def _print_progress_lines(quiet: bool) -> Callable[[], None]:
    """Print the library's progress lines (the "aegen" logger) to the current stdout, as the
    CLI always has; --quiet keeps only warnings. Returns the function that stops it."""
    import logging

    class PrintHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(self.format(record), flush=True)

    logger = logging.getLogger("aegen")
    handler = PrintHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return lambda: logger.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    training = bool(argv) and argv[0] == "train"
    wants_model_defaults = training and ("-h" in argv or "--help" in argv)
    parser = build_parser(model_optimizer_defaults() if wants_model_defaults else None, training)
    args = parser.parse_args(argv)
    stop_printing = _print_progress_lines(quiet=getattr(args, "quiet", False))
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops like Ctrl-C does
    try:
        COMMANDS[args.command](args)
    except Interrupted as exc:  # training stopped; it says what the run folder keeps
        print(f"aegen: {exc}", file=sys.stderr)
        return 143 if _terminated else 130
    except AegenError as exc:
        print(f"aegen: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`aegen models | head`): nothing to say
        return 0
    except OSError as exc:  # a full disk, a read-only folder: one line, the files stay as they were
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"aegen: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aegen: interrupted", file=sys.stderr)
        return 143 if _terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_printing()
    return 0


def run() -> NoReturn:
    """The `aegen` command and `python -m aegen`: main(), then exit.

    The interpreter's exit garbage-collects every object torch's import made, 0.25-0.4 s of each
    command on the 2-core machine (bench/README.md); frozen objects are skipped, and the process
    ends next, so keeping them costs nothing. (Not in main(), which tests call in-process.)"""
    status = main()
    gc.freeze()
    sys.exit(status)


_terminated = False


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C (temporary files removed, one line), then exit 143."""
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> None:
    from aegen.training.run import train
    from aegen.training.settings import SETTINGS, merge_settings, read_settings_file

    flags = {name: getattr(args, name) for name in SETTINGS}
    flags["model_options"] = dict(flags["model_options"] or [])
    # A setting neither the file nor a flag gives keeps its default, or a resumed run's value.
    settings = merge_settings(read_settings_file(args.config) if args.config else {}, flags)
    trained = train(
        args.model,
        out=args.out,
        resume=args.resume,
        progress=False if args.quiet else None,
        **settings,
    )
    print(f"run folder: {trained.run_dir}")


def _sample(args: argparse.Namespace) -> None:
    from aegen.export.files import check_image_output, save_images
    from aegen.training.run import load

    trained = load(args.run, args.data_root, args.weights)
    sampler = args.sampler or trained.default_sampler
    label = "" if args.label is None else f"-label{args.label}"
    out = args.out or args.run / f"samples-{sampler}{label}-seed{args.seed}.png"
    check_image_output(out, args.n)
    save_images(out, trained.sample(args.n, args.seed, sampler, args.label))
    print(out)


def _reconstruct(args: argparse.Namespace) -> None:
    from aegen.data.pixels import unit_images
    from aegen.export.files import IMAGE_FORMATS, check_suffix, save_images
    from aegen.training.run import load
    from aegen.views.figures import save_reconstructions

    trained = load(args.run, args.data_root, args.weights)
    out = args.out or args.run / f"reconstructions-{args.split}.png"
    check_suffix(out, IMAGE_FORMATS)
    images = trained.split(args.split)
    originals = images.images[: args.n]
    rebuilt = trained.reconstruct(originals, images.labels[: args.n])
    if out.suffix.lower() == ".png":
        save_reconstructions(out, unit_images(originals), rebuilt)
    else:
        save_images(out, rebuilt)
    print(out)


def _encode(args: argparse.Namespace) -> None:
    from aegen.export.files import CODE_FORMATS, check_suffix, save_codes
    from aegen.training.run import load

    trained = load(args.run, args.data_root, args.weights)
    out = args.out or args.run / f"codes-{args.split}.npz"
    check_suffix(out, CODE_FORMATS)
    images = trained.split(args.split)
    save_codes(out, trained.encode(images.images, images.labels), images.labels)
    print(out)


def _pictures(args: argparse.Namespace) -> None:
    from aegen.runs.folder import read_history
    from aegen.training.run import load
    from aegen.views.run_pictures import write_run_pictures

    write_run_pictures(load(args.run, args.data_root), read_history(args.run))
    print(args.run)


def _evaluate(args: argparse.Namespace) -> None:
    from aegen.runs.folder import SCORES
    from aegen.scoring.evaluate import evaluate
    from aegen.views.score_table import run_table

    metrics = evaluate(
        args.run,
        args.samplers,
        args.n_samples,
        args.nll_k,
        args.seed,
        args.data_root,
        args.weights,
        args.threads,
    )
    print(run_table(metrics), end="")
    print(args.run / SCORES)


def _score(args: argparse.Namespace) -> None:
    from aegen.scoring.per_image import (
        check_scores_output,
        image_names,
        images_to_score,
        per_image_scores,
        source_name,
        write_scores,
    )
    from aegen.training.run import load

    out = args.out or args.run / f"scores-{source_name(args.images)}.csv"
    check_scores_output(out)
    trained = load(args.run, args.data_root, args.weights)
    data = images_to_score(trained, args.images, args.data_root)
    scores = per_image_scores(trained, data, args.nll_k, args.seed)
    write_scores(out, scores, data.labels, image_names(args.images, data))
    print(out)
    means = ", ".join(f"{name} {values.mean().item():.6g}" for name, values in scores.items())
    print(f"scored {len(data)} images; means: {means}")


def _export(args: argparse.Namespace) -> None:
    from aegen.export.networks import export_part
    from aegen.training.run import load

    trained = load(args.run, weights=args.weights)
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    out = args.out or args.run / f"{args.part}{suffix}"
    difference = export_part(trained.model, args.part, args.format, out)
    print(out)
    checked = (
        f"largest difference from aegen's own output {difference:.2g}"
        if difference is not None
        else "checked by ONNX's checker only (install onnxruntime to run it against aegen's)"
    )
    print(f"{trained.name} {args.part} ({trained.weights} weights): {checked}")


def _compare(args: argparse.Namespace) -> None:
    from aegen.views.comparison import compare_runs, terminal_table

    print(terminal_table(*compare_runs(args.runs, args.out)), end="")
    print(f"written: {args.out}/comparison.md, comparison.json, comparison.png")


def _experiment(args: argparse.Namespace) -> None:
    out = args.out or Path("experiments") / f"{args.name}-{args.dataset}"
    if args.name == "lossy-compression":
        from aegen.experiments.lossy_compression import lossy_compression

        lossy_compression(args.dataset, out, args.data_root, args.epochs, nll_k=args.nll_k)
        return
    from aegen.experiments.can_ae_generate import can_ae_generate

    nll_k = args.nll_k or 1000
    can_ae_generate(args.dataset, out, args.data_root, args.epochs, args.n_samples, nll_k)


def _report(args: argparse.Namespace) -> None:
    from aegen.export.files import check_suffix
    from aegen.views.report import write_report

    out = args.out or (args.runs[0] / "report.html" if len(args.runs) == 1 else Path("report.html"))
    check_suffix(out, (".html", ".htm"))
    print(write_report(args.runs, out))


def _explore(args: argparse.Namespace) -> None:
    from aegen.views.explore import serve

    serve(args.run, args.host, args.port, args.data_root)


def _models(args: argparse.Namespace) -> None:
    from aegen.models import PRESETS, build_model

    for name, entry in PRESETS.items():
        model = build_model(name)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name:8s} {parameters:>9,d} parameters  {entry.description}")
        print(
            f"{'':8s} Adam lr {model.default_lr:g}, weight decay {model.default_weight_decay:g}, "
            f"betas {model.adam_betas}; options (--option KEY=VALUE):"
        )
        for option, default, meaning in entry.option_defaults():
            shown = json.dumps(list(default) if isinstance(default, tuple) else default)
            print(f"{'':10s}{option + ' = ' + shown:<30} {meaning}")


COMMANDS = {
    "train": _train,
    "sample": _sample,
    "reconstruct": _reconstruct,
    "encode": _encode,
    "pictures": _pictures,
    "evaluate": _evaluate,
    "score": _score,
    "export": _export,
    "compare": _compare,
    "experiment": _experiment,
    "report": _report,
    "explore": _explore,
    "models": _models,
}
