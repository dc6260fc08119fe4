"""`aegen.train(...)`: data, model, trainer and run folder put together into a trained run.

It sits above scoring and views (the end of a run draws its pictures and diagnoses itself);
nothing below imports it. Progress lines go to the "aegen" logger (the CLI prints them; in
Python, `logging.basicConfig(level=logging.INFO)` shows them).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aegen.data.datasets import (
    ImageSet,
    check_dataset_name,
    has_test_split,
    load_dataset,
    split_sizes,
    train_val_split,
)
from aegen.data.decode import image_files
from aegen.errors import ConfigError, Interrupted, RunError, TrainingError
from aegen.models import Autoencoder, config_to_dict, preset
from aegen.models.stage_plan import plan_text
from aegen.runs.config import DataRecord, RunConfig, read_run_config
from aegen.runs.folder import read_history, write_diagnosis
from aegen.runs.lock import LOCK, RunFolderLock, orphan_files
from aegen.runs.run import RunFolder
from aegen.scoring.diagnosis import diagnose
from aegen.settings.train import RESUMABLE, SETTINGS, TrainSettings, settings_from
from aegen.trained import TrainedModel, check_same_data, load, recorded_model
from aegen.training import distributed
from aegen.training.callbacks import Callback, EpochHook, call_hooks, epoch_hooks
from aegen.training.device import flushing_denormals, resolve_device
from aegen.training.epoch_log import format_epoch
from aegen.training.model_for_data import (
    check_model_size,
    memory_of,
    options_for_data,
    seeded_model,
)
from aegen.training.trainer import Trainer, check_kl_warmup
from aegen.version import __version__
from aegen.views.run_pictures import write_run_pictures
from aegen.views.tensorboard import TensorBoardLog, summary_writer

log = logging.getLogger("aegen")


def train(
    model: str = "vae",
    settings: TrainSettings | str | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    callbacks: Sequence[Callback | EpochHook] | None = None,
    **overrides: Any,
) -> TrainedModel:
    """Train a preset model and write its run folder; with resume, continue the run in `out`.

    settings: a TrainSettings, or only the data set's name (a folder or array path, or
    mnist-5k, mnist, fashion-mnist); overrides: any TrainSettings field by name, e.g.
    `train("vae", "mnist-5k", epochs=3)`. A resumed run keeps its recorded settings; of those
    given, only the resumable ones (settings.train.RESUMABLE) may differ from them.
    The returned model is on the CPU and holds the best epoch's weights (the lowest validation
    loss), as `load` gives them. progress: a bar per epoch (None: only on a terminal).
    callbacks: functions (run, epoch, metrics), or objects with such an on_epoch_end method,
    called after each epoch is saved; one that returns aegen.STOP ends training there
    (training/callbacks.py).
    """
    given = _given_settings(settings, overrides)
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
    hooks = epoch_hooks(callbacks)
    with flushing_denormals():  # before any tensor work, so that torch's threads inherit it
        main = distributed.is_main()  # under torchrun only rank 0 writes files and logs
        if resume:
            run_dir = Path(str(out))
            if not run_dir.is_dir():  # say so before the lock makes the folder
                read_run_config(run_dir)
            with _writer_lock(run_dir, main):
                net, chosen = _resumed_run(model, run_dir, given)
                trained = _train(model, run_dir, net, chosen, True, main, progress, hooks)
                distributed.finish()
                return trained
        chosen = settings_from(given, "aegen.train's arguments")
        check_dataset_name(chosen.dataset)
        preset(model)  # an unknown model before any data is read
        resolve_device(chosen.device)  # a missing device or bad data: no folder made
        if chosen.tensorboard:
            summary_writer()  # its package missing: no folder made either
        if not has_test_split(chosen.dataset):  # own images: recorded by absolute path
            chosen = dataclasses.replace(chosen, dataset=absolute_path(chosen.dataset))
        folder = Path(chosen.dataset)
        if folder.is_dir():  # too few image files to split: said before any is decoded or cached
            split_sizes(len(image_files(folder)), chosen.val_fraction, str(folder))
        data = training_data(chosen)
        # Too few images to split, or options too large to build: one line, no folder made.
        n_train = split_sizes(len(data), chosen.val_fraction, data.name)[0]
        options = options_for_data(model, chosen.model_options, data)
        memory = memory_of(resolve_device(chosen.device))
        check_model_size(model, options, chosen.batch_size, n_train, memory)
        net = seeded_model(model, options, chosen.seed)
        check_kl_warmup(net, chosen)  # before the folder is made
        run_dir = Path(out) if out is not None else default_run_dir(model, chosen.dataset)
        with _writer_lock(run_dir, main):
            if main and _holds_a_run(run_dir):
                raise RunError(
                    f"{run_dir} is not empty; add --resume to continue the run there "
                    "or choose another --out"
                )
            trained = _train(model, run_dir, net, chosen, False, main, progress, hooks)
            distributed.finish()
            return trained


def _given_settings(settings: TrainSettings | str | None, overrides: dict[str, Any]) -> dict:
    """The settings train() was given, by name: a TrainSettings' fields that differ from the
    defaults (or the data set's name), then the overrides."""
    if isinstance(settings, TrainSettings):
        defaults = TrainSettings()
        given = {
            name: getattr(settings, name)
            for name in SETTINGS
            if getattr(settings, name) != getattr(defaults, name)
        }
    else:
        given = {} if settings is None else {"dataset": settings}
    return {**given, **overrides}


def default_run_dir(model: str, dataset: str, parent: Path = Path("runs")) -> Path:
    """runs/MODEL-DATASET (a folder or file: its name), or the first of -2, -3, ... not taken."""
    name = dataset if has_test_split(dataset) else Path(dataset).stem
    candidate, n = parent / f"{model}-{name}", 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{model}-{name}-{n}"
    return candidate


def _writer_lock(run_dir: Path, main: bool) -> contextlib.AbstractContextManager:
    """The run folder's lock for the process that writes it (under torchrun: rank 0)."""
    return RunFolderLock(run_dir) if main else contextlib.nullcontext()


def _holds_a_run(run_dir: Path) -> bool:
    """Whether a folder holds anything but the lock and a killed writer's temporary files."""
    leftovers = {LOCK, *(p.name for p in orphan_files(run_dir))}
    return run_dir.is_dir() and any(p.name not in leftovers for p in run_dir.iterdir())


def _train(
    model: str,
    run_dir: Path,
    net: Autoencoder,
    chosen: TrainSettings,
    resume: bool,
    main: bool,
    progress: bool | None,
    hooks: list[EpochHook],
) -> TrainedModel:
    """Train into run_dir, whose lock this process holds. Callbacks (and --tensorboard's) see
    each epoch after it is committed (runs/run.py)."""
    device = resolve_device(chosen.device)  # a missing device stops the run before any file
    if chosen.tensorboard:
        summary_writer()  # its package missing: nothing written, also when resuming
    full = training_data(chosen)
    if resume:
        check_same_data(run_dir, read_run_config(run_dir).data, full)
    train_index, val_index = train_val_split(len(full), chosen.val_fraction, chosen.seed)
    batch = net.default_batch_size(len(train_index))
    chosen = chosen.with_model_defaults(net.default_lr, net.default_weight_decay, batch)
    config = run_config(model, net, chosen, device, full, len(train_index), len(val_index))
    trainer = Trainer(
        net,
        chosen,
        full.images[train_index],
        full.images[val_index],
        full.labels[train_index],
        full.labels[val_index],
        device=device,
    )
    begin = RunFolder.continued if resume else RunFolder.create
    try:
        folder = begin(run_dir, config, writes=main)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted before training began; {run_dir} holds no epoch of this command"
        ) from None
    try:
        fit = _fit(folder, net, trainer, chosen, full, val_index, resume, progress, hooks)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {folder.what_is_kept()}") from None
    except OSError as exc:  # a write failed (full disk, a file made read-only): say what stays
        raise OSError(exc.errno, f"{exc.strerror or exc}; {folder.what_is_kept()}") from exc
    pictures_again = (
        f"{run_dir} keeps all {folder.committed} epochs: `aegen pictures {run_dir}` draws them "
        "again"
    )
    try:
        return _finish(folder, fit, trainer, main)
    except KeyboardInterrupt:
        stopped = f"interrupted while drawing the run's pictures; {pictures_again}"
        raise Interrupted(stopped) from None
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}; {pictures_again}") from exc


def _fit(
    folder: RunFolder,
    net: Autoencoder,
    trainer: Trainer,
    chosen: TrainSettings,
    full: ImageSet,
    val_index: torch.Tensor,
    resume: bool,
    progress: bool | None,
    hooks: list[EpochHook],
) -> Autoencoder:
    """Train the model into its run folder: resume from its checkpoint, commit every epoch;
    returns the model (on the device it trained on)."""
    run_dir, config, main, model = folder.path, folder.config, folder.writes, folder.model
    start = 0
    if resume and folder.has_checkpoint():  # none yet: start from the seeded start
        start = folder.resume(net, trainer.optimizers)
        trainer.after_checkpoint_loaded()  # a new rate, another device (CUDA graphs or not)
        if main:
            log.info(f"resuming {run_dir} after epoch {start} of {chosen.epochs}")
    if main and chosen.tensorboard:
        board = TensorBoardLog(run_dir, start, full.images[val_index], full.labels[val_index])
        hooks = [*hooks, board.on_epoch_end]
    measure = f"val_{net.selection_metric}"  # what makes an epoch the best (base.py)

    def finish_epoch(metrics: dict) -> bool:
        """Commit the epoch, log it and call the hooks; True ends training."""
        metrics = folder.commit_epoch(net, trainer.optimizers, metrics, measure)
        if not main:
            return False
        log.info(format_epoch(metrics, chosen))
        if trainer.stage_note:
            log.info(trainer.stage_note)
        if not hooks:
            return False
        snapshot = TrainedModel(run_dir, on_cpu(copy.deepcopy(net)), config, chosen.data_root)
        return call_hooks(hooks, snapshot, metrics["epoch"], metrics)

    if main:
        log.info(
            f"training {model} on {chosen.dataset} ({len(full) - len(val_index)} train / "
            f"{len(val_index)} val images, {trainer.device}{_notes(trainer, chosen)}) -> {run_dir}"
        )
    try:
        trainer.fit(start, finish_epoch, progress, folder.history)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {folder.what_is_kept()}") from None
    except TrainingError as exc:
        raise TrainingError(f"{exc}; {folder.what_is_kept()}") from None
    finally:
        if main and chosen.tensorboard:
            board.close()
    if main and trainer.stop_reason:
        log.info(trainer.stop_reason)
    return net


def _notes(trainer: Trainer, chosen: TrainSettings) -> str:
    """What the first log line adds about how the run trains."""
    notes = ", bf16" if chosen.precision == "bf16" else ""
    notes += ", CUDA graph" if trainer.graphed_step is not None else ""
    notes += f", {trainer.tuner.describe()}" if trainer.device.type == "cpu" else ""
    if len(trainer.planned) > 1:  # e.g. vq-vae: "epochs 1-35 autoencoder, 36-50 prior"
        notes += f"; {plan_text(trainer.planned, trainer.steps_per_epoch)}"
    return notes


def on_cpu(net: Autoencoder) -> Autoencoder:
    """The model on the CPU in the layout `load` gives it: a model trained channels_last
    would otherwise sample differently, in the last bits, from its saved run."""
    # torch's stubs lack Module.to(device, memory_format=...), which Module.to accepts.
    return net.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def _finish(folder: RunFolder, net: Autoencoder, trainer: Trainer, main: bool) -> TrainedModel:
    """The trained model with its best weights; the writer draws the run's pictures and
    keeps its diagnosis."""
    net = on_cpu(net)
    best, history = folder.best, folder.history
    if best is not None and best.epoch != len(history):
        net.load_state_dict(best.state)
    weights = "best" if best is not None else "last"
    data_root = folder.config.settings.data_root
    trained = TrainedModel(folder.path, net, folder.config, data_root, weights)
    if main:
        samples = write_run_pictures(trained, history)
        diagnosis = diagnose(trained, history, trainer.planned, trainer.steps_per_epoch, samples)
        write_diagnosis(folder.path, diagnosis)
        for finding in diagnosis["findings"]:
            log.warning(f"warning: {finding}")
    return trained


def run_config(
    model: str,
    net: Autoencoder,
    chosen: TrainSettings,
    device: torch.device,
    data: ImageSet,
    n_train: int,
    n_val: int,
) -> RunConfig:
    """What config.json records: the model, its resolved options, every setting, the data."""
    record = DataRecord(tuple(data.image_shape), tuple(data.classes), data.digest, n_train, n_val)
    return RunConfig(
        model=model,
        model_config=config_to_dict(net.config),
        settings=chosen,
        data=record,
        default_sampler=net.default_sampler,
        device=str(device),
        aegen_version=__version__,
    )


def _resumed_run(
    model: str, run_dir: Path, given: dict[str, Any]
) -> tuple[Autoencoder, TrainSettings]:
    """The model and settings of a run to continue: its recorded settings, with the given ones
    applied where they are resumable and refused where they differ otherwise."""
    folder = RunFolder.open(run_dir)
    folder.check_resumable()
    config = folder.config
    if config.model != model:
        raise RunError(f"{run_dir} holds a {config.model!r} run, not {model!r}")
    recorded = config.settings
    # Seeded as when the run began: a run killed before its first checkpoint restarts from the
    # same initial weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recorded.seed)
        net = recorded_model(run_dir, config)
    given = dict(given)
    options = given.pop("model_options", None) or {}
    changed = {k: v for k, v in options.items() if config.model_config.get(k) != v}
    if changed:
        raise ConfigError(
            f"--resume cannot change the model option {next(iter(changed))!r}; "
            "train a new run with --out elsewhere"
        )
    if isinstance(given.get("dataset"), (str, Path)) and not has_test_split(str(given["dataset"])):
        given["dataset"] = absolute_path(str(given["dataset"]))  # as the run recorded it
    for key, value in given.items():
        if key not in SETTINGS:
            settings_from({key: value})  # the unknown-setting error, with a suggestion
        if key not in RESUMABLE and value != getattr(recorded, key):
            raise ConfigError(
                f"--resume cannot change {key!r} (the run has "
                f"{getattr(recorded, key)!r}); resumable: {', '.join(RESUMABLE)}"
            )
    finished = len(read_history(run_dir))
    if isinstance(given.get("epochs"), int) and given["epochs"] < finished:
        raise ConfigError(
            f"--epochs {given['epochs']} is fewer than the {finished} epochs {run_dir} has "
            f"finished; a resumed run goes on to --epochs {finished} or more"
        )
    resumed = {**dataclasses.asdict(recorded), **{k: v for k, v in given.items() if k in RESUMABLE}}
    return net, settings_from(resumed, "the resumed run's settings")


def absolute_path(dataset: str) -> str:
    """A folder or array's path as a run records it: absolute, links kept (a link's name may be
    what says it is an array), so that the run opens from any working folder."""
    return os.path.abspath(os.path.expanduser(dataset))


def training_data(chosen: TrainSettings) -> ImageSet:
    """The training split of the chosen data, at the chosen size, channels and background."""
    return load_dataset(
        chosen.dataset,
        "train",
        chosen.data_root,
        image_size=chosen.image_size,
        channels=chosen.channels,
        background=chosen.background,
    )


__all__ = ["TrainedModel", "load", "train"]
