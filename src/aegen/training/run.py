"""`aegen.train(...)`: data, model, trainer and run folder put together into a trained run.

It sits above scoring and views (the end of a run draws its pictures and diagnoses itself);
nothing below imports it. Progress lines go to the "aegen" logger (the CLI
prints them; in Python, `logging.basicConfig(level=logging.INFO)` shows them).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
import math
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
    train_val_split,
)
from aegen.errors import ConfigError, DataError, Interrupted, RunError, TrainingError
from aegen.models import Autoencoder, build_model, config_to_dict, preset
from aegen.models.stage_plan import plan_text
from aegen.runs.checkpoint import BestWeights, load_checkpoint, save_checkpoint
from aegen.runs.folder import (
    CHECKPOINT,
    CONFIG,
    read_config,
    read_history,
    write_config,
    write_diagnosis,
    write_history,
)
from aegen.runs.lock import LOCK, RunFolderLock, orphan_files, remove_orphans
from aegen.runs.weights import save_best_weights, save_weights
from aegen.scoring.diagnosis import diagnose
from aegen.trained import TrainedModel, check_same_data, load, recorded_model
from aegen.training import distributed
from aegen.training.callbacks import Callback, EpochHook, call_hooks, epoch_hooks
from aegen.training.device import flushing_denormals, resolve_device
from aegen.training.settings import RESUMABLE, SETTINGS, TrainSettings, settings_from
from aegen.training.trainer import Trainer, check_kl_warmup
from aegen.version import __version__
from aegen.views.run_pictures import write_run_pictures
from aegen.views.tensorboard import TensorBoardLog, summary_writer

log = logging.getLogger("aegen")


def default_run_dir(model: str, dataset: str, parent: Path = Path("runs")) -> Path:
    """runs/MODEL-DATASET (a folder or file: its name), or the first of -2, -3, ... not taken."""
    name = dataset if has_test_split(dataset) else Path(dataset).stem
    candidate, n = parent / f"{model}-{name}", 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{model}-{name}-{n}"
    return candidate


def train(
    model: str = "vae",
    dataset: str | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    callbacks: Sequence[Callback | EpochHook] | None = None,
    **settings: Any,
) -> TrainedModel:
    """Train a preset model and write its run folder; with resume, continue the run in `out`.

    The keyword settings are those of TrainSettings (listed below, derived from it); a resumed
    run keeps its recorded settings, and of the given ones only {resumable} may differ from them.
    The returned model is on the CPU and holds the best epoch's weights (the lowest validation
    loss), as `load` gives them. progress: a bar per epoch (None: only on a terminal).
    callbacks: functions (run, epoch, metrics), or objects with such an on_epoch_end method,
    called after each epoch is saved; one that returns aegen.STOP ends training there
    (training/callbacks.py).
    """
    if dataset is not None:
        settings["dataset"] = dataset
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
    hooks = epoch_hooks(callbacks)
    with flushing_denormals():  # before any tensor work, so that torch's threads inherit it
        main = distributed.is_main()  # under torchrun only rank 0 writes files and logs
        if resume:
            run_dir = Path(str(out))
            if not run_dir.is_dir():  # say so before the lock makes the folder
                read_config(run_dir)
            with _writer_lock(run_dir, main):
                resumed = _resumed_run(model, run_dir, settings)
                return _train(model, *resumed, True, main, progress, hooks)
        chosen = settings_from(settings, "aegen.train's arguments")
        check_dataset_name(chosen.dataset)
        preset(model)  # an unknown model before any data is read
        resolve_device(chosen.device)  # a missing device or bad data: no folder made
        if chosen.tensorboard:
            summary_writer()  # its package missing: no folder made either
        if not has_test_split(chosen.dataset):  # own images: recorded by absolute path
            chosen = dataclasses.replace(chosen, dataset=absolute_path(chosen.dataset))
        data = training_data(chosen)
        options = options_for_data(model, chosen.model_options, data)
        net = seeded_model(model, options, chosen.seed)
        check_kl_warmup(net, chosen)  # before the folder is made
        run_dir = Path(out) if out is not None else default_run_dir(model, chosen.dataset)
        with _writer_lock(run_dir, main):
            if main and _holds_a_run(run_dir):
                raise RunError(
                    f"{run_dir} is not empty; add --resume to continue the run there "
                    "or choose another --out"
                )
            return _train(model, run_dir, net, chosen, False, main, progress, hooks)


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
    """Train into run_dir, whose lock this process holds.

    The end of an epoch commits in one step: checkpoint.safetensors is replaced atomically and
    is the single source of truth; model.safetensors, model-best.safetensors and history.jsonl
    are then derived from it, and derived again whenever the run resumes, so a kill at any
    point converges. Callbacks (and --tensorboard's) see each epoch after it is committed."""
    device = resolve_device(chosen.device)  # a missing device stops the run before any file
    if chosen.tensorboard:
        summary_writer()  # its package missing: nothing written, also when resuming
    full = training_data(chosen)
    if resume:
        check_same_data(run_dir, read_config(run_dir)["data"], full)
    train_index, val_index = train_val_split(len(full), chosen.val_fraction, chosen.seed)
    batch = net.default_batch_size(len(train_index))
    chosen = chosen.with_model_defaults(net.default_lr, net.default_weight_decay, batch)
    config = _run_config(model, net, chosen, device, full, len(train_index), len(val_index))
    if main:
        remove_orphans(run_dir)
        try:  # fail before any training when the folder cannot be written
            write_config(run_dir, config)
        except OSError as exc:
            raise RunError(
                f"cannot write the run folder {run_dir} ({exc.strerror or exc})"
            ) from exc
    trainer = Trainer(
        net,
        chosen,
        full.images[train_index],
        full.images[val_index],
        full.labels[train_index],
        full.labels[val_index],
        device=device,
    )
    start = 0
    history: list[dict] = []
    best: BestWeights | None = None
    if resume and os.path.lexists(run_dir / CHECKPOINT):  # none yet: start from the seeded start
        start, history, best = load_checkpoint(run_dir, net, model, trainer.optimizers)
        trainer.after_checkpoint_loaded()  # a new rate, another device (CUDA graphs or not)
        if main:  # derived from the checkpoint, as after its epoch
            save_weights(run_dir, net, model)
            if best is not None:
                save_best_weights(run_dir, best.state, best.epoch, model)
            write_history(run_dir, history)
            log.info(f"resuming {run_dir} after epoch {start} of {chosen.epochs}")
    if main and chosen.tensorboard:
        val_images, val_labels = full.images[val_index], full.labels[val_index]
        board = TensorBoardLog(run_dir, start, val_images, val_labels)
        hooks = [*hooks, board.on_epoch_end]

    committed = [start]  # the epochs the checkpoint on disk holds

    measure = f"val_{net.selection_metric}"  # what makes an epoch the best (base.py)

    def finish_epoch(metrics: dict) -> bool:
        nonlocal best
        if history and set(metrics) != set(history[0]):  # a run begun by an older aegen
            metrics = {k: v for k, v in metrics.items() if k in history[0]}
        epoch = metrics["epoch"]
        # A checkpoint of an aegen that kept no best weights: they start with the first epoch
        # that beats every finished one (until then `load` takes the last weights).
        bar = min((m[measure] for m in history), default=math.inf)
        if best is not None:
            bar = history[best.epoch - 1][measure]
        if metrics[measure] < bar:
            best = BestWeights.of(net, epoch)
        history.append(metrics)
        if not main:
            return False
        save_checkpoint(run_dir, net, model, trainer.optimizers, epoch, history, best)
        committed[0] = epoch
        save_weights(run_dir, net, model)
        if best is not None and best.epoch == epoch:
            save_best_weights(run_dir, best.state, best.epoch, model)
        write_history(run_dir, history)
        log.info(format_epoch(metrics, chosen))
        if trainer.stage_note:
            log.info(trainer.stage_note)
        if not hooks:
            return False
        snapshot = TrainedModel(run_dir, copy.deepcopy(net).cpu(), config, chosen.data_root)
        return call_hooks(hooks, snapshot, epoch, metrics)

    notes = ", bf16" if chosen.precision == "bf16" else ""
    notes += ", CUDA graph" if trainer.graphed_step is not None else ""
    notes += f", {trainer.tuner.describe()}" if trainer.device.type == "cpu" else ""
    if len(trainer.planned) > 1:  # e.g. vq-vae: "epochs 1-35 autoencoder, 36-50 prior"
        notes += f"; {plan_text(trainer.planned, trainer.steps_per_epoch)}"
    if main:
        log.info(
            f"training {model} on {chosen.dataset} ({len(train_index)} train / "
            f"{len(val_index)} val images, {trainer.device}{notes}) -> {run_dir}"
        )
    try:
        trainer.fit(start, finish_epoch, progress, history)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {_what_is_kept(run_dir, committed[0])}") from None
    except TrainingError as exc:
        raise TrainingError(f"{exc}; {_what_is_kept(run_dir, committed[0])}") from None
    finally:
        if main and chosen.tensorboard:
            board.close()
    if main and trainer.stop_reason:
        log.info(trainer.stop_reason)
    net = net.cpu()
    if best is not None and best.epoch != len(history):
        net.load_state_dict(best.state)
    weights = "best" if best is not None else "last"
    trained = TrainedModel(run_dir, net, config, chosen.data_root, weights)
    if main:
        samples = write_run_pictures(trained, history)
        diagnosis = diagnose(trained, history, trainer.planned, trainer.steps_per_epoch, samples)
        write_diagnosis(run_dir, diagnosis)
        for finding in diagnosis["findings"]:
            log.warning(f"warning: {finding}")
    return trained


def _what_is_kept(run_dir: Path, finished: int) -> str:
    """What a stopped run leaves, for its last message."""
    if finished == 0:
        return (
            f"no epoch had finished, so {run_dir} holds no checkpoint: `--resume` starts the "
            "run again from its first step"
        )
    return (
        f"{run_dir} keeps epoch{'s 1-' if finished > 1 else ' '}{finished}: `--resume` "
        "continues from there"
    )


def seeded_model(model: str, options: dict[str, Any], seed: int) -> Autoencoder:
    """A fresh model whose initial weights depend on the run's seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return build_model(model, options)
        except (RuntimeError, MemoryError, OverflowError, ValueError) as exc:
            # Options torch cannot allocate or lay out: the first line of its message only.
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(f"cannot build {model} with these options ({reason})") from exc


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


def options_for_data(model: str, options: dict[str, Any], data: ImageSet) -> dict[str, Any]:
    """The model options with the data's image size and channels (and, for a conditional
    model, its classes) filled in; an option given that contradicts the data is one line."""
    channels, height, width = data.image_shape
    if height != width:
        raise DataError(
            f"{data.name} holds {width}x{height} images; aegen's models take square ones: "
            "pass --image-size S to resize and centre-crop them to SxS"
        )
    config_class = preset(model).config_class
    fitted = {"image_size": height, "channels": channels}
    fitted |= {
        key: value
        for key, value in config_class.defaults_for_images(height, channels).items()
        if key not in options
    }
    fields = {f.name for f in dataclasses.fields(config_class)}
    present = len(data.labels.unique()) if data.labelled else 0  # classes with images
    if "num_classes" in fields:  # a conditional model: the labels pick the class
        if present < 2:
            raise DataError(
                f"{model} is conditional and needs images of two or more classes; "
                f"{data.name} has {'one class' if present else 'no labels'} "
                "(give a folder with a sub-folder per class, or an .npz with labels)"
            )
        fitted["num_classes"] = _class_option("num_classes", options, data, len(data.classes))
    if "prior_classes" in fields:  # a prior conditioned on labels where the data has them
        default = len(data.classes) if present >= 2 else 0
        fitted["prior_classes"] = _class_option("prior_classes", options, data, default)
        if fitted["prior_classes"] and present < 2:
            raise DataError(
                f"{data.name} has {'one class' if present else 'no labels'}: "
                "train with --option prior_classes=0 (an unconditional prior)"
            )
    for key in ("image_size", "channels"):
        if key in options and options[key] != fitted[key]:
            flag = "--image-size" if key == "image_size" else "--channels"
            raise ConfigError(
                f"the model option {key}={options[key]} disagrees with the data "
                f"({key.replace('_', ' ')} {fitted[key]}); pass {flag} {options[key]} to "
                "convert the data instead"
            )
    return {**options, **fitted}


def _class_option(name: str, options: dict[str, Any], data: ImageSet, default: int) -> Any:
    """A model option counting classes (num_classes, prior_classes): the one given, else the
    default; fewer than the data's classes is one line (a value that is no whole number is
    passed on for the model's config to refuse)."""
    given = options.get(name, default)
    if isinstance(given, int) and 0 < given < len(data.classes):
        raise ConfigError(
            f"the model option {name}={given} is fewer than the data's {len(data.classes)} classes"
        )
    return given


def _run_config(
    model: str,
    net: Autoencoder,
    chosen: TrainSettings,
    device: torch.device,
    data: ImageSet,
    n_train: int,
    n_val: int,
) -> dict[str, Any]:
    """config.json: the model, its resolved options and every setting, in their sections."""
    return {
        "aegen_version": __version__,
        "model": model,
        "model_config": config_to_dict(net.config),
        "train": chosen.section("train"),
        "data": {
            "dataset": chosen.dataset,
            "root": chosen.data_root,
            "image_size": chosen.image_size,
            "channels": chosen.channels,
            "background": chosen.background,
            "image_shape": list(data.image_shape),
            "classes": list(data.classes),
            "digest": data.digest,
            "n_train": n_train,
            "n_val": n_val,
        },
        "default_sampler": net.default_sampler,
        "device": str(device),
    }


def recorded_settings(config: dict[str, Any]) -> TrainSettings:
    """The settings a run folder's config.json records (settings it predates keep defaults)."""
    values = {k: v for k, v in config.get("train", {}).items() if k in SETTINGS}
    data = config.get("data", {})
    values.update(
        {
            "dataset": data.get("dataset"),
            "data_root": data.get("root"),
            "image_size": data.get("image_size"),
            "channels": data.get("channels"),
            "background": data.get("background"),  # none before the setting: white
        }
    )
    return settings_from({k: v for k, v in values.items() if v is not None}, f"{CONFIG}")


def _resumed_run(
    model: str, run_dir: Path, given: dict[str, Any]
) -> tuple[Path, Autoencoder, TrainSettings]:
    """The run folder, model and settings of a run to continue: its recorded settings, with the
    given ones applied where they are resumable and refused where they differ otherwise."""
    config = read_config(run_dir)
    if not os.path.lexists(run_dir / CHECKPOINT) and read_history(run_dir):
        raise RunError(
            f"{run_dir} has a training history but no {CHECKPOINT}: the run cannot be "
            "continued; train a new run with --out elsewhere"
        )
    if config.get("model") != model:
        raise RunError(f"{run_dir} holds a {config.get('model')!r} run, not {model!r}")
    try:
        recorded = recorded_settings(config)
    except ConfigError as exc:
        raise RunError(
            f"{run_dir / CONFIG} does not describe a run aegen can resume ({exc})"
        ) from exc
    # Seeded as when the run began: a run killed before its first checkpoint restarts from the
    # same initial weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recorded.seed)
        net = recorded_model(run_dir, config)
    options = given.pop("model_options", None) or {}
    changed = {k: v for k, v in options.items() if config["model_config"].get(k) != v}
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
    resumed = {**dataclasses.asdict(recorded), **{k: v for k, v in given.items() if k in RESUMABLE}}
    return run_dir, net, settings_from(resumed, "the resumed run's settings")


# Logged per epoch beside the losses, with no validation value (stage: a multi-stage model's).
CONTROLS = ("lr", "kl_weight", "stage")


def format_epoch(metrics: dict, settings: TrainSettings) -> str:
    """One log line per epoch: losses, the loss terms where there are any, the rate and KL
    weight where a schedule or warm-up moves them, and the time."""
    terms = "".join(
        f"  {k} {metrics[k]:.4g}/{metrics['val_' + k]:.4g}"
        for k in metrics
        if k not in ("epoch", "loss", "seconds", *CONTROLS) and not k.startswith("val_")
    )
    if settings.lr_schedule != "constant" and "lr" in metrics:
        terms += f"  lr {metrics['lr']:.3g}"
    if settings.kl_warmup and "kl_weight" in metrics:
        terms += f"  kl weight {metrics['kl_weight']:.3g}"
    return (
        f"epoch {metrics['epoch']}/{settings.epochs}  train {metrics['loss']:.4g}  "
        f"val {metrics['val_loss']:.4g}{terms}  ({metrics['seconds']:.1f}s)"
    )


def _derive_train_signature() -> None:
    """Give `train` the settings as keyword parameters and list them in its docstring, so that
    help(aegen.train) and editors show them although they are defined once, in TrainSettings."""
    own = list(inspect.signature(train).parameters.values())[:-1]  # all but **settings
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=spec.default if spec.default is not dataclasses.MISSING else {},
            annotation=spec.type,
        )
        for name, spec in SETTINGS.items()
        if name != "dataset"
    ]
    train.__signature__ = inspect.signature(train).replace(parameters=own + extra)  # type: ignore[attr-defined]
    lines = [f"    {name}: {spec.metadata['meaning']}" for name, spec in SETTINGS.items()]
    train.__doc__ = (
        (train.__doc__ or "").format(resumable=", ".join(RESUMABLE))
        + "\n    Settings:\n"
        + "\n".join(lines)
        + "\n"
    )


_derive_train_signature()

__all__ = ["TrainedModel", "load", "train"]
