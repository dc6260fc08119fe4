"""What several commands share: the parser whose usage errors are one line, the value parsers,
the arguments more than one command takes (RUN_DIR, and the flags EvalSettings defines:
`--data-root`, `--weights`, `--seed`, `--nll-k`) and the sampler names from their registry."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, NoReturn

SPLITS = ("val", "test", "train")  # the images `encode` and `reconstruct` read


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other mistake is (argparse
    prints the whole usage block first); --help still gives it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"aegen: error: {message} (`{self.prog} --help` lists the options)\n")


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def words(names: list[str] | tuple[str, ...], last: str = "or") -> str:
    """'a, b or c' (or 'a, b and c')."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)


def run_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "run", type=Path, metavar="RUN_DIR", help="a run folder `aegen train` wrote"
    )


def setting_help(spec: dataclasses.Field, default: Any = dataclasses.MISSING) -> str:
    """An EvalSettings field's meaning and its default: its value, or what None stands for."""
    default = spec.default if default is dataclasses.MISSING else default
    meaning, unset = spec.metadata["meaning"], spec.metadata["unset"]
    if default is not None:
        return f"{meaning} (default {default})"
    return f"{meaning} (default: {unset})" if unset else meaning


def add_eval_flag(
    command: argparse.ArgumentParser,
    name: str,
    default: Any = dataclasses.MISSING,
    help_text: str | None = None,
) -> None:
    """The flag of an EvalSettings field (settings/evaluate.py), as every command that takes it
    has it: its name, type, bounds, choices and help; `default` where a command has its own."""
    from aegen.settings.evaluate import SETTINGS

    spec = SETTINGS[name]
    meta = spec.metadata
    flag = meta["flag"] or "--" + name.replace("_", "-")
    options: dict[str, Any] = {
        "dest": name,
        "default": spec.default if default is dataclasses.MISSING else default,
        "help": help_text or setting_help(spec, default),
    }
    if meta["choices"]:
        options["choices"] = meta["choices"]
    else:
        options["metavar"] = meta["metavar"] or name.upper()
    if str(spec.type).startswith("list"):
        options["action"] = "append"
    elif str(spec.type).startswith("int"):
        options["type"] = positive_int if meta["minimum"] == 1 else whole_number
    command.add_argument(flag, **options)


def sampler_names() -> str:
    """Every sampler a user may name: the registry's (latent/samplers.py) and numbered forms."""
    from aegen.latent.samplers import SAMPLERS

    return (
        f"{', '.join(SAMPLERS)}, or numbered: gmm-K (K components), diffusion-N (N ODE steps) "
        "or, for ldm, prior-N (its prior in N steps)"
    )


def folder_writer(run: Path) -> Any:
    """The run folder's shared lock (runs/lock.py), for a command that writes files derived
    from the run into it: a training or an evaluation of the run refuses it, and it them."""
    from aegen.runs.lock import RunFolderLock

    return RunFolderLock(run, shared=True)


def writes_into(run: Path, out: Path) -> bool:
    """Whether an output file lands in the run folder itself."""
    return out.resolve().parent == run.resolve()


def writer_of(run: Path, out: Path) -> Any:
    """The run folder's shared lock when the output file lands in it, else no lock: a file
    written elsewhere cannot collide with the run's writers."""
    import contextlib

    return folder_writer(run) if writes_into(run, out) else contextlib.nullcontext()


def held_out_arguments(command: argparse.ArgumentParser, out_help: str) -> None:
    """RUN_DIR, --split, --out FILE, --weights and --data-root: what `encode` and `reconstruct`
    take to read a run's held-out images."""
    run_argument(command)
    command.add_argument(
        "--split",
        choices=SPLITS,
        default="val",
        help="which images: the run's validation split (default), the "
        "data set's test set, or the training split",
    )
    command.add_argument("--out", type=Path, metavar="FILE", help=out_help)
    add_eval_flag(command, "weights")
    add_eval_flag(command, "data_root")
