"""A trained model with its run folder: encode, decode, reconstruct and sample images.

Images go in and come out as floats in [0, 1] (uint8 in 0..255 is accepted too), shape
[N, C, H, W] (or [N, H, W] for one channel). `aegen.load(run_dir)` returns one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from aegen.data.datasets import ImageSet, has_test_split, load_dataset, train_val_split
from aegen.data.pixels import to_model_range, to_unit_range
from aegen.errors import ConfigError, DataError, RunError, first_line
from aegen.files.tensors import load_tensors, save_tensors, tensors_digest
from aegen.latent.samplers import (
    LEARNED,
    LearnedPriorSampler,
    PriorSampler,
    Sampler,
    fit_subset,
    fitted_name,
    is_conditional,
    make_sampler,
    numbered,
)
from aegen.models import Autoencoder, build_recorded_model
from aegen.runs.config import CONFIG, DataRecord, RunConfig
from aegen.runs.run import RunFolder
from aegen.runs.weights import apply_weights, read_weights
from aegen.settings.evaluate import EVAL_BATCH

log = logging.getLogger("aegen")

# Per call to sample(): at most MAX_SAMPLES images and MAX_SAMPLE_BYTES (docs/guide/guarantees.md).
MAX_SAMPLES = 100_000
MAX_SAMPLE_BYTES = 2 * 2**30


STANDARD_SAMPLERS = ("prior", "gaussian", "gmm")


def standard_samplers(model_class: type[Autoencoder]) -> list[str]:
    """The samplers scored unless others are asked for: the prior and the two fitted Gaussians,
    or the prior alone where codes are discrete (no density can be fitted to them)."""
    return list(STANDARD_SAMPLERS) if model_class.continuous_codes else ["prior"]


class TrainedModel:
    """A trained model with its run folder: sample, encode, decode and reconstruct images."""

    def __init__(
        self,
        run_dir: Path,
        model: Autoencoder,
        config: RunConfig,
        data_root: str | Path | None = None,
        weights: str = "last",
    ):
        self.run_dir, self.model, self.config = Path(run_dir), model.eval(), config
        self.weights = weights  # which of the run's weights: "best" or "last"
        self.name: str = config.model
        self.data_root = data_root if data_root is not None else config.settings.data_root
        self._samplers: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TrainedModel({self.name!r}, run_dir={str(self.run_dir)!r})"

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def default_sampler(self) -> str:
        return self.config.default_sampler

    @property
    def conditional(self) -> bool:
        """Whether the model takes labels (a cvae): then encode, decode and sample use them."""
        return self.model.conditional

    @property
    def classes(self) -> int:
        return self.model.num_classes

    @property
    def label_classes(self) -> int:
        """Classes `sample(label=...)` can ask for: a conditional model's, or those of a prior
        conditioned on labels (ldm) whose encoder and decoder take none."""
        return self.model.num_classes or self.model.prior_classes

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> codes [N, latent_dim] (the posterior mean for a VAE; a conditional model
        also needs the images' labels)."""
        x = self._model_input(images)
        return self._batched(self.model.encode, x, self._labels(labels, len(x)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [N, latent_dim] -> images [N, C, H, W] in [0, 1]; a conditional model also
        needs labels: class indices [N] or class weights [N, classes]."""
        codes = torch.as_tensor(codes, dtype=torch.float32)
        if codes.dim() != 2 or codes.shape[1] != self.latent_dim:
            raise ConfigError(
                f"codes must have shape (N, {self.latent_dim}), got {tuple(codes.shape)}"
            )
        images = self._batched(self.model.decode, codes, self._labels(labels, len(codes)))
        return to_unit_range(images, self.model.value_range)

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> their reconstructions through the code, in [0, 1]."""
        return self.decode(self.encode(images, labels), labels)

    def sample(
        self,
        n: int = 64,
        seed: int = 0,
        sampler: str | None = None,
        label: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n new images [n, C, H, W] in [0, 1] decoded from codes the sampler draws.

        For a conditional model `label` picks the class (one index, or one per image); without
        it the classes are drawn uniformly (seeded).
        """
        pixels = self.model.image_shape[0] * self.model.image_shape[1] * self.model.image_shape[2]
        most = min(MAX_SAMPLES, MAX_SAMPLE_BYTES // (4 * pixels))
        if not 1 <= n <= most:
            raise ConfigError(
                f"the number of samples must lie in 1..{most:,d} per call (at most "
                f"{MAX_SAMPLE_BYTES // 2**30} GiB of images), got {n}"
            )
        return self.decode(*self.draw_codes(n, seed, sampler, label))

    def sample_in_chunks(
        self, n: int, seed: int = 0, sampler: str | None = None, chunk: int = 4 * EVAL_BATCH
    ) -> Iterator[torch.Tensor]:
        """The images sample(n, seed, sampler) gives, decoded and handed out chunk by chunk, so
        that any n fits in memory (the scores of large colour images use it)."""
        codes, labels = self.draw_codes(n, seed, sampler, None)
        for start in range(0, n, chunk):
            part = None if labels is None else labels[start : start + chunk]
            yield self.decode(codes[start : start + chunk], part)

    def draw_codes(
        self, n: int, seed: int, sampler: str | None, label: int | torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The seeded codes (and, for a conditional model, labels) that sample() decodes."""
        if n < 1:
            raise ConfigError(f"the number of samples must be at least 1, got {n}")
        if not 0 <= seed < 2**63:
            raise ConfigError(f"the seed must lie in 0..{2**63 - 1}, got {seed}")
        generator = torch.Generator().manual_seed(seed)
        self._check_label(label, n)
        chosen = self.sampler(sampler or self.default_sampler)

        def labels_for_samples() -> torch.Tensor | None:
            if label is not None:
                return torch.as_tensor(label).expand(n)
            if not self.conditional:  # a labelled prior alone draws from every class at once
                return None
            return torch.randint(self.classes, (n,), generator=generator)

        if label is not None and not self.conditional and not is_conditional(chosen):
            raise ConfigError(  # the decoder takes no label either: it would be ignored
                f"{self.name}'s {chosen.name} sampler draws no codes for a label; --label "
                "needs its prior"
            )
        if is_conditional(chosen):  # codes drawn for their labels, so the labels come first
            labels = labels_for_samples()
            return chosen.sample(n, generator, labels), labels
        codes = chosen.sample(n, generator)
        labels = labels_for_samples()
        return codes, labels

    def _check_label(self, label: int | torch.Tensor | None, n: int) -> None:
        """A label only for a conditional model: one of its class indices, or a tensor of them
        (one, or one per sample)."""
        if label is None:
            return
        count = self.label_classes
        if not count:
            raise ConfigError(f"{self.name} is not a conditional model: it takes no label")
        classes = f"0..{count - 1}"
        if torch.is_tensor(label):
            if (
                label.is_floating_point()
                or label.is_complex()
                or label.dtype == torch.bool
                or label.shape not in ((), (n,))
                or (label.numel() and not 0 <= int(label.min()) <= int(label.max()) < count)
            ):
                raise ConfigError(
                    f"labels must be one class index or {n} of them, whole numbers in {classes}"
                )
        elif isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < count:
            raise ConfigError(
                f"the label must be one of the class indices in {classes}, got {label!r}"
            )

    @functools.cached_property
    def train_codes(self) -> torch.Tensor:
        """Codes of the training split, encoded once for every sampler fitted to them."""
        return self._train_codes_and_labels[0]

    def _codes_to_fit(self, sampler: Sampler) -> tuple[torch.Tensor, torch.Tensor]:
        """The training codes a sampler is fitted on: all of them, or for one that fits on at
        most `most_codes` (the mixture) its seeded subset of the images alone, encoded apart
        so that the subset is the same whatever was encoded before (a run's pictures fit the
        mixture: encoding all 54,000 Fashion-MNIST images cost them 0.8 s)."""
        most = getattr(sampler, "most_codes", None)
        train = self.split("train")
        if most is None or len(train) <= most:
            return self._train_codes_and_labels
        pick = fit_subset(len(train), most, getattr(sampler, "seed", 0))
        return self.encode(train.images[pick], train.labels[pick]), train.labels[pick]

    @functools.cached_property
    def _train_codes_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.split("train")
        return self.encode(train.images, train.labels), train.labels

    @functools.cached_property
    def weights_digest(self) -> str:
        """sha256 of the model's weights: a saved sampler fitted to other weights is stale."""
        return tensors_digest(self.model.state_dict())

    def sampler(self, name: str, fit: bool = True) -> Sampler:
        """The named latent sampler, fitted on the training codes (loaded from the run if saved
        and fitted to these weights; refitted and saved over if the weights changed since).
        fit=False refuses, with one line, a sampler that would have to be fitted first."""
        if name not in self._samplers:
            steps = numbered(name, "prior")  # prior-N: ldm's flow solved in N steps
            sampler: Sampler
            if steps is not None or (name == "prior" and self.model.learned_prior):
                sampler = self._learned_prior(name, steps)
            else:
                classes = self.classes if self.conditional else 0
                sampler = make_sampler(name, self.latent_dim, classes)
                if not self.model.continuous_codes and name != "prior":
                    raise ConfigError(
                        f"{self.name}'s codes are codebook entries, not points of a continuous "
                        f"space: no {name} sampler can be fitted to them; sample from its prior"
                    )
            path = self.run_dir / f"sampler-{fitted_name(sampler)}.safetensors"
            if not isinstance(sampler, (PriorSampler, LearnedPriorSampler)):  # nothing to fit
                if not os.path.lexists(path) or not self._load_sampler(sampler, path):
                    if not fit:
                        raise ConfigError(
                            f"the {name} sampler is not fitted to this run's weights yet; "
                            f"`aegen sample {self.run_dir} --sampler {name}` fits it"
                        )
                    codes, labels = self._codes_to_fit(sampler)
                    sampler.fit(codes, labels if self.conditional else None)
                    state = sampler.state()
                    metadata = {
                        "sampler": fitted_name(sampler),
                        "model": self.name,
                        "weights": self.weights_digest,
                        "sha256": tensors_digest(state),
                    }
                    save_tensors(path, state, metadata)
            self._samplers[name] = sampler
        return self._samplers[name]

    def _learned_prior(self, name: str, steps: int | None) -> LearnedPriorSampler:
        """The prior the model learned, drawn by the model: `prior`, or `prior-N` (steps N),
        ldm's flow solved in N Heun steps instead of its sampling_steps option (fewer: faster,
        coarser samples)."""
        model = self.model
        draw: Callable[[int, torch.Generator, torch.Tensor | None], torch.Tensor | None]
        draw = model.draw_prior
        if steps is not None:
            if not model.solved_prior:
                raise ConfigError(
                    f"{name!r}: only ldm's prior is solved in steps; {self.name} samples from "
                    "'prior'"
                )
            draw = lambda n, generator, labels: model.solve_prior(n, generator, labels, steps=steps)
        return LearnedPriorSampler(draw, self.latent_dim, model.prior_classes > 0, name)

    def _load_sampler(self, sampler: Sampler, path: Path) -> bool:
        """Load a saved sampler, its tensors checked in the file's header before they are read;
        False when it was fitted to other weights (the run trained on since). A damaged or
        edited file is reported, not refitted over (the user may want to look at it)."""
        expected = {k: (tuple(v.shape), v.dtype) for k, v in sampler.state().items()}
        name = fitted_name(sampler)
        hint = f"delete it and aegen fits the {name} sampler again"
        try:
            tensors, metadata = load_tensors(path, expected)
            if metadata.get("sampler", name) != name:
                raise ConfigError(f"it holds a {metadata['sampler']!r} sampler")
            if "sha256" in metadata or isinstance(sampler, LEARNED):  # older files: no digest
                if metadata.get("sha256") != tensors_digest(tensors):
                    raise ConfigError("its tensors do not match the digest written with them")
            if metadata.get("weights") != self.weights_digest:  # or written before the digests
                log.warning(f"{path.name} was fitted to other weights of the run: fitting again")
                return False
            sampler.load_state(tensors)
        except RunError as exc:
            raise RunError(f"{exc}; {hint}") from exc
        except ConfigError as exc:
            raise RunError(f"{path} is no usable {name} sampler ({exc}); {hint}") from exc
        return True

    @property
    def has_test_split(self) -> bool:
        """Whether the run's data has a test split; a user's folder or array has none, and its
        held-out validation images are the reference instead."""
        return has_test_split(self.config.dataset)

    def split(self, which: str = "val") -> ImageSet:
        """The run's images: 'train' and 'val' (the seeded split it trained with) or 'test'
        (for data without a test split: the held-out 'val' images, never trained on)."""
        settings = self.config.settings
        if which not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {which!r}; choose train, val or test")
        if which == "test" and self.has_test_split:
            return self._load_split("test")
        which = "val" if which == "test" else which
        full = self._load_split("train")
        check_same_data(self.run_dir, self.config.data, full)
        train_index, val_index = train_val_split(len(full), settings.val_fraction, settings.seed)
        index = train_index if which == "train" else val_index
        images, labels = full.images[index], full.labels[index]
        return ImageSet(full.name, which, images, labels, full.classes, full.digest)

    def _load_split(self, split: str) -> ImageSet:
        """A split of the run's data, at the size, channels and background it trained with."""
        settings = self.config.settings
        return load_dataset(
            settings.dataset,
            split,
            self.data_root,
            image_size=settings.image_size,
            channels=settings.channels,
            background=settings.background,
        )

    def _model_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model takes them: [N, C, H, W] or flat [N, C*H*W], and [N, H, W] for one
        channel; channels last ([N, H, W, C]) is refused rather than silently scrambled."""
        images = torch.as_tensor(images)
        shape = self.model.image_shape
        accepted = [shape, (shape[0] * shape[1] * shape[2],)]
        if shape[0] == 1:
            accepted.insert(0, shape[1:])
        if images.dim() < 2 or len(images) == 0 or tuple(images.shape[1:]) not in accepted:
            names = " or ".join(f"(N, {', '.join(map(str, s))})" for s in accepted)
            hint = (
                "; for channels-last images, pass images.permute(0, 3, 1, 2)"
                if images.dim() == 4 and tuple(images.shape[1:]) == (*shape[1:], shape[0])
                else ""
            )
            raise ConfigError(f"images must have shape {names}, got {tuple(images.shape)}{hint}")
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
            raise ConfigError(
                f"labels must be {n} class indices or weights of shape "
                f"({n}, {self.classes}), got {tuple(labels.shape)}"
            )
        return labels

    @staticmethod
    def _batched(
        function: Callable[..., torch.Tensor], x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if labels is None:
            return torch.cat([function(chunk) for chunk in x.split(EVAL_BATCH)])
        return torch.cat(
            [
                function(chunk, chunk_labels)
                for chunk, chunk_labels in zip(x.split(EVAL_BATCH), labels.split(EVAL_BATCH))
            ]
        )


def check_same_data(run_dir: Path, recorded: DataRecord, data: ImageSet) -> None:
    """Refuse to continue or score a run whose own images changed since it trained: its split
    (and so its held-out reference) would silently be another."""
    digest = recorded.digest
    if digest and data.digest and digest != data.digest:
        raise DataError(
            f"{data.name} changed since {run_dir} trained on it (other images or labels); "
            "restore it, or train a new run"
        )


def load(
    run_dir: str | Path, data_root: str | Path | None = None, weights: str | None = None
) -> TrainedModel:
    """Open a run folder written by `aegen train`. weights: "best" (model-best.safetensors,
    the epoch with the lowest validation loss), "last" (model.safetensors, the latest epoch's)
    or None: the best where the run has them (runs trained before aegen kept them have only
    the last)."""
    folder = RunFolder.open(run_dir)
    path, weights = folder.weights_path(weights)
    # The file's tensors are checked against the model's shapes on torch's meta device before
    # the model is allocated: an edited config.json cannot make a huge one.
    layout = recorded_model(folder.path, folder.config, meta=True)
    tensors, _ = read_weights(path, layout, folder.model)
    model = recorded_model(folder.path, folder.config)
    apply_weights(tensors, model, prefix="")
    return TrainedModel(folder.path, model, folder.config, data_root, weights)


def recorded_model(run_dir: Path, config: RunConfig, meta: bool = False) -> Autoencoder:
    """A freshly initialised model as config.json describes it, or one line saying why not;
    meta: on torch's meta device (shapes only, nothing allocated)."""
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return build_recorded_model(config.model, config.model_config)
    except ConfigError as exc:
        raise RunError(
            f"{run_dir / CONFIG} does not describe a model aegen can build ({exc})"
        ) from exc
    except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as exc:
        # Options torch cannot lay out or allocate (a damaged file).
        message = f"{run_dir / CONFIG} describes a model aegen cannot build ({first_line(exc)})"
        raise RunError(message) from exc
