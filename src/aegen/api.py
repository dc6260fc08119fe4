"""The Python API: `aegen.train(...)` makes a run folder, `aegen.load(run_dir)` uses one.

This is the pipeline layer: it composes data, model, trainer, run folder, samplers and pictures.
Images go in and come out as floats in [0, 1] (uint8 in 0..255 is accepted too), shape [N, 1, 28, 28].
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aegen import __version__
from aegen.data import ImageSet, check_dataset_name, load_dataset, to_model_range, \
    to_unit_range, train_val_split
from aegen.errors import ConfigError, RunError
from aegen.models import build_model, config_to_dict, preset
from aegen.models.base import Autoencoder, config_from_dict
from aegen.run import CHECKPOINT, CONFIG, read_config
from aegen.samplers import make_sampler

EVAL_BATCH = 1024


class TrainedModel:
    """A trained model with its run folder: sample, encode, decode and reconstruct images."""

    def __init__(self, run_dir: Path, model: Autoencoder, config: dict[str, Any],
                 data_root: str | Path | None = None):
        self.run_dir, self.model, self.config = Path(run_dir), model.eval(), config
        self.name: str = config["model"]
        self.data_root = data_root if data_root is not None else config["data"].get("root")
        self._samplers: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TrainedModel({self.name!r}, run_dir={str(self.run_dir)!r})"

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def default_sampler(self) -> str:
        return self.config["default_sampler"]

    @property
    def conditional(self) -> bool:
        """Whether the model takes labels (a cvae): then encode, decode and sample use them."""
        return self.model.conditional

    @property
    def classes(self) -> int:
        return self.model.num_classes

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> codes [N, latent_dim] (the posterior mean for a VAE; a conditional model
        also needs the images' labels)."""
        x = self._model_input(images)
        return self._batched(self.model.encode, x, self._labels(labels, len(x)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [N, latent_dim] -> images [N, 1, 28, 28] in [0, 1]; a conditional model also
        needs labels: class indices [N] or class weights [N, classes]."""
        codes = torch.as_tensor(codes, dtype=torch.float32)
        if codes.dim() != 2 or codes.shape[1] != self.latent_dim:
            raise ConfigError(f"codes must have shape (N, {self.latent_dim}), "
                              f"got {tuple(codes.shape)}")
        images = self._batched(self.model.decode, codes, self._labels(labels, len(codes)))
        return to_unit_range(images, self.model.value_range)

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> their reconstructions through the code, in [0, 1]."""
        return self.decode(self.encode(images, labels), labels)

    def sample(self, n: int = 64, seed: int = 0, sampler: str | None = None,
               label: int | torch.Tensor | None = None) -> torch.Tensor:
        """n new images [n, 1, 28, 28] in [0, 1] decoded from codes the sampler draws.

        For a conditional model `label` picks the class (one index, or one per image); without
        it the classes are drawn uniformly (seeded).
        """
        if n < 1:
            raise ConfigError(f"the number of samples must be at least 1, got {n}")
        generator = torch.Generator().manual_seed(seed)
        codes = self.sampler(sampler or self.default_sampler).sample(n, generator)
        labels = None
        if self.conditional:
            labels = (torch.randint(self.classes, (n,), generator=generator) if label is None
                      else torch.as_tensor(label).expand(n))
        elif label is not None:
            raise ConfigError(f"{self.name} is not a conditional model: it takes no label")
        return self.decode(codes, labels)

    @functools.cached_property
    def train_codes(self) -> torch.Tensor:
        """Codes of the training split, encoded once for every sampler fitted to them."""
        train = self.split("train")
        return self.encode(train.images, train.labels)

    def sampler(self, name: str):
        """The named latent sampler, fitted on the training codes (loaded from the run if saved)."""
        from aegen.run import load_tensors, save_tensors

        if name not in self._samplers:
            sampler = make_sampler(name, self.latent_dim)
            path = self.run_dir / f"sampler-{name}.safetensors"
            if name != "prior":
                if path.is_file():
                    sampler.load_state(load_tensors(path)[0])
                else:
                    sampler.fit(self.train_codes)
                    save_tensors(path, sampler.state(), {"sampler": name, "model": self.name})
            self._samplers[name] = sampler
        return self._samplers[name]

    def evaluate(self, samplers: list[str] | None = None, n_samples: int = 10_000,
                 nll_k: int = 1000, seed: int = 0, log: Callable[[str], None] = print) -> dict:
        """Score reconstructions, likelihoods (VAE) and samples on the test split; see evaluate.py."""
        from aegen.evaluate import evaluate_run

        return evaluate_run(self, samplers, n_samples, nll_k, seed=seed, log=log)

    def split(self, which: str = "val") -> ImageSet:
        """The run's images: 'train' and 'val' (the seeded split it trained with) or 'test'."""
        data = self.config["data"]
        if which == "test":
            return load_dataset(data["dataset"], "test", self.data_root)
        if which not in ("train", "val"):
            raise ConfigError(f"unknown split {which!r}; choose train, val or test")
        full = load_dataset(data["dataset"], "train", self.data_root)
        train_index, val_index = train_val_split(len(full), self.config["train"]["val_fraction"],
                                                 self.config["train"]["seed"])
        index = train_index if which == "train" else val_index
        return ImageSet(full.name, which, full.images[index], full.labels[index], full.classes)

    def _model_input(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        shape = self.model.image_shape
        if images.numel() == 0 or images[0].numel() != shape[0] * shape[1] * shape[2]:
            raise ConfigError(f"images must have shape (N, {shape[1]}, {shape[2]}) or "
                              f"(N, {', '.join(map(str, shape))}), got {tuple(images.shape)}")
        images = images.reshape(-1, *shape)
        if images.dtype == torch.uint8:
            return to_model_range(images, self.model.value_range)
        images = images.float()
        if images.min() < 0 or images.max() > 1:
            raise ConfigError("float images must lie in [0, 1] (or pass uint8 in 0..255)")
        low, high = self.model.value_range
        return images * (high - low) + low

    def _labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels checked against the model: needed by a conditional one, ignored otherwise."""
        if not self.conditional:
            return None
        if labels is None:
            raise ConfigError(f"{self.name} is conditional: give the images' labels")
        labels = torch.as_tensor(labels)
        if labels.dim() == 1 and not labels.is_floating_point():
            if len(labels) != n or labels.min() < 0 or labels.max() >= self.classes:
                raise ConfigError(f"labels must be {n} class indices in 0..{self.classes - 1}")
        elif labels.shape != (n, self.classes):
            raise ConfigError(f"labels must be {n} class indices or weights of shape "
                              f"({n}, {self.classes}), got {tuple(labels.shape)}")
        return labels

    @staticmethod
    def _batched(function: Callable[..., torch.Tensor], x: torch.Tensor,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            return torch.cat([function(chunk) for chunk in x.split(EVAL_BATCH)])
        return torch.cat([function(chunk, chunk_labels) for chunk, chunk_labels
                          in zip(x.split(EVAL_BATCH), labels.split(EVAL_BATCH))])


def load(run_dir: str | Path, data_root: str | Path | None = None) -> TrainedModel:
    """Open a run folder written by `aegen train` (weights from model.safetensors)."""
    from aegen.run import WEIGHTS, load_weights

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        model = build_model(config["model"], config["model_config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise RunError(f"{run_dir / CONFIG} does not describe a model aegen can build ({exc})") from exc
    load_weights(run_dir / WEIGHTS, model, config["model"])
    return TrainedModel(run_dir, model, config, data_root)


def default_run_dir(model: str, dataset: str, parent: Path = Path("runs")) -> Path:
    """runs/MODEL-DATASET, or the first of -2, -3, ... not yet taken."""
    candidate, n = parent / f"{model}-{dataset}", 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{model}-{dataset}-{n}"
    return candidate


def train(model: str = "vae", dataset: str = "mnist-5k", *, epochs: int = 10,
          batch_size: int = 128, lr: float | None = None, weight_decay: float | None = None,
          seed: int = 0, val_fraction: float = 0.1, model_options: dict[str, Any] | None = None,
          out: str | Path | None = None, resume: bool = False, data_root: str | Path | None = None,
          progress: bool | None = None, log: Callable[[str], None] = print,
          device: str = "auto", precision: str = "fp32",
          cuda_graphs: bool = True) -> TrainedModel:
    """Train a preset model and write its run folder; with resume, continue the run in out.

    device: auto (a GPU if torch sees one), cpu, cuda or cuda:N; the returned model is on the
    CPU. precision: fp32, or bf16 for mixed precision (kept by a resumed run). cuda_graphs: on a
    GPU, replay each step recorded as a CUDA graph (single-optimizer models, one process)."""
    from aegen import distributed
    from aegen.device import flushing_denormals, resolve_device
    from aegen.pictures import write_run_pictures
    from aegen.run import load_checkpoint, save_checkpoint, save_weights, write_config, \
        write_metrics
    from aegen.train import TrainConfig, Trainer

    with flushing_denormals():  # before any tensor work, so that torch's threads inherit it
        main = distributed.is_main()  # under torchrun only rank 0 writes files and logs
        device = resolve_device(device)  # a device that is not there stops the run before any file
        if not main:
            log = lambda line: None  # noqa: E731

        if resume:
            run_dir, net, train_config, dataset, data_root = _resumed_run(model, out, epochs,
                                                                          data_root)
        else:
            check_dataset_name(dataset)
            entry = preset(model)
            train_config = config_from_dict(TrainConfig, {
                "epochs": epochs, "batch_size": batch_size, "seed": seed,
                "lr": entry.lr if lr is None else lr,
                "val_fraction": val_fraction, "precision": precision,
                "weight_decay": entry.weight_decay if weight_decay is None else weight_decay})
            with torch.random.fork_rng(devices=[]):  # the seed fixes the initial weights too
                torch.manual_seed(train_config.seed)
                net = build_model(model, model_options)
            run_dir = Path(out) if out is not None else default_run_dir(model, dataset)
            if main and run_dir.exists() and any(run_dir.iterdir()):
                raise RunError(f"{run_dir} is not empty; add --resume to continue the run there "
                               "or choose another --out")
        full = load_dataset(dataset, "train", data_root)
        train_index, val_index = train_val_split(len(full), train_config.val_fraction,
                                                 train_config.seed)
        config = {
            "aegen_version": __version__, "model": model,
            "model_config": config_to_dict(net.config),
            "train": dataclasses.asdict(train_config),
            "data": {"dataset": dataset, "root": str(data_root) if data_root is not None else None,
                     "n_train": len(train_index), "n_val": len(val_index)},
            "default_sampler": "prior" if net.variational else "gaussian",
            "device": str(device),
        }
        try:  # fail before any training when the folder cannot be written
            if main:
                write_config(run_dir, config)
        except OSError as exc:
            raise RunError(f"cannot write the run folder {run_dir} "
                           f"({exc.strerror or exc})") from exc

        trainer = Trainer(net, train_config, full.images[train_index], full.images[val_index],
                          full.labels[train_index], full.labels[val_index], device=device,
                          cuda_graphs=cuda_graphs)
        start, history = 0, []
        if resume and (run_dir / CHECKPOINT).is_file():  # no checkpoint yet: start from scratch
            start, history = load_checkpoint(run_dir, net, model, trainer.optimizers)
            log(f"resuming {run_dir} after epoch {start} of {train_config.epochs}")

        def finish_epoch(metrics: dict) -> None:
            history.append(metrics)
            if not main:
                return
            save_checkpoint(run_dir, net, model, trainer.optimizers, metrics["epoch"], history)
            save_weights(run_dir, net, model)
            write_metrics(run_dir, history)
            log(format_epoch(metrics, train_config.epochs))

        notes = ", bf16" if train_config.precision == "bf16" else ""
        notes += ", CUDA graph" if trainer.graphed_step is not None else ""
        log(f"training {model} on {dataset} ({len(train_index)} train / {len(val_index)} val "
            f"images, {trainer.device}{notes}) -> {run_dir}")
        trainer.fit(start, finish_epoch, progress)
        trained = TrainedModel(run_dir, net.cpu(), config, data_root)
        if main:
            if not (run_dir / "model.safetensors").is_file():
                save_weights(run_dir, net, model)
            write_run_pictures(trained, history)
        return trained


def _resumed_run(model: str, out: str | Path | None, epochs: int,
                 data_root: str | Path | None) -> tuple[Path, Autoencoder, Any, str, Any]:
    """The run folder, model, training config, data set and root of a run to continue."""
    from aegen.train import TrainConfig

    if out is None:
        raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
    run_dir = Path(out)
    config = read_config(run_dir)
    if config.get("model") != model:
        raise RunError(f"{run_dir} holds a {config.get('model')!r} run, not {model!r}")
    net = build_model(model, config["model_config"])
    train_config = config_from_dict(TrainConfig, {**config["train"], "epochs": epochs})
    return (run_dir, net, train_config, config["data"]["dataset"],
            data_root or config["data"].get("root"))


def format_epoch(metrics: dict, epochs: int) -> str:
    """One log line per epoch: losses, the loss terms where there are any, and the time."""
    terms = "".join(f"  {k} {metrics[k]:.4g}/{metrics['val_' + k]:.4g}" for k in metrics
                    if k not in ("epoch", "loss", "seconds") and not k.startswith("val_"))
    return (f"epoch {metrics['epoch']}/{epochs}  train {metrics['loss']:.4g}  "
            f"val {metrics['val_loss']:.4g}{terms}  ({metrics['seconds']:.1f}s)")


__all__ = ["TrainedModel", "load", "train"]
