"""What every aegen model offers: encode, decode, one loss; nothing about files, devices or CLIs."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from aegen.errors import ConfigError


@dataclass
class LossOutput:
    """The loss to report and its named parts (per image, detached), for logging.

    Models with several update groups (see Autoencoder.update_groups) also give the loss each
    group minimises; otherwise the single group minimises `loss`.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    group_losses: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Stage:
    """Epochs first..last (1-based, inclusive) of a run in which only `groups` train.

    A stage that `settles` on a validation term (e.g. "val_recon") may end before `last`: after
    an epoch at or past its floor (`least_steps` optimizer steps and `least_epochs` epochs) in
    which that term has gained less than SETTLE_GAIN over the last SETTLE_EPOCHS epochs; the
    next stage then starts at once (training.stage_plan resolves a plan against the history)."""

    groups: tuple[str, ...]
    first: int
    last: int
    settles: str | None = None
    least_steps: int = 0
    least_epochs: int = 1

    @property
    def epochs(self) -> int:
        return self.last - self.first + 1


def option(default: Any, meaning: str) -> Any:
    """A model option: its default and a one-line meaning (shown by `aegen models`)."""
    return field(default=default, metadata={"meaning": meaning})


@dataclass
class ModelConfig:
    """Every model's options. Each is an `option(default, meaning)`; integer sizes must be >= 1,
    and a model adds its own rules by extending check(). Autoencoder's constructor checks."""

    image_size: int = option(28, "side of the square input images in pixels")
    channels: int = option(1, "colour channels of the images (1 grayscale, 3 RGB)")

    def check(self) -> None:
        """Raise ConfigError for a value the model cannot be built with."""
        require_positive(self)

    @classmethod
    def defaults_for_images(cls, image_size: int, channels: int) -> dict[str, Any]:
        """Option defaults that depend on the images (the grid models' widths for 64 px and
        up), used where the user gave no value."""
        return {}


def option_meanings(config_class: type) -> list[tuple[str, Any, str]]:
    """(name, default, meaning) of each option of a model config class."""
    return [
        (f.name, f.default, f.metadata.get("meaning", "")) for f in dataclasses.fields(config_class)
    ]


class Autoencoder(nn.Module):
    """An encoder to a flat code of `latent_dim` numbers and a decoder back to images [B, C, H, W].

    `value_range` is the pixel range the decoder produces and the loss expects as input.
    A conditional model (`num_classes` > 0) also takes the images' labels: class indices [B] or
    class weights [B, num_classes] (soft labels, e.g. to interpolate between classes). The others
    accept and ignore them, so callers pass labels whenever they have them.

    The class attributes below are a model's declared capabilities and optimizer defaults: the
    trainer, the scores and the CLI read them, never anything a subclass adds on its own.
    """

    value_range: tuple[float, float]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig  # each model names its own
    latent_dim: int
    kl_scale: torch.Tensor  # a buffer: see __init__
    image_shape: tuple[int, int, int]
    variational: bool = False  # True: trained so that codes follow the prior N(0, I)
    num_classes: int = 0
    pixel_likelihood: bool = False  # log p(x|z) is defined per pixel: ELBO and NLL can be scored
    channels_last: bool = False  # train in the channels_last layout (where it measured faster)
    # The validation term that picks the best weights and drives early stopping: the loss,
    # unless a model's loss is measured in something that moves as it trains.
    selection_metric: str = "loss"
    # The density a model not trained to match the prior samples from by default, fitted to its
    # training codes (see default_sampler).
    ex_post_sampler: str = "gaussian"
    # False where codes are discrete (codebook entries): no density can be fitted to them.
    continuous_codes: bool = True
    learned_prior: bool = False  # True: draw_prior gives its prior's codes, not N(0, I)
    solved_prior: bool = False  # True: solve_prior draws them in steps (ldm's flow)
    # Classes a learned prior draws codes for (`--label`) while encode and decode need no label.
    prior_classes: int = 0
    default_lr: float = 1e-3  # Adam's learning rate when the settings leave it open
    default_weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config if config is not None else ModelConfig()
        config.check()
        self.config = config
        # The share of its weight a KL term has now: the trainer's KL warm-up moves it; not
        # saved with the weights. A tensor, so that a step recorded as a CUDA graph reads it.
        self.register_buffer("kl_scale", torch.ones(()), persistent=False)
        self.training_groups: tuple[str, ...] | None = None  # see stages()

    @property
    def has_kl_term(self) -> bool:
        """Whether the loss weighs a KL term by kl_scale (what `--kl-warmup` warms up)."""
        return False

    def default_batch_size(self, train_images: int) -> int:
        """Images per step when the settings leave it open, for a training split this large."""
        return 128

    @property
    def graphable(self) -> bool:
        """Whether the trainer may record this model's step as a CUDA graph (a loss that takes
        gradients inside itself, like RAE-GP's Jacobian penalty, is left eager)."""
        return True

    def draw_prior(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """n codes [n, latent_dim] (on the CPU) from a prior the model learned (the VampPrior's
        mixture, the VQ-VAE's PixelCNN, the ldm's flow; learned_prior says so), which the
        `prior` sampler then draws from; None where the prior is the standard normal. `labels`
        [n] (class indices) only for a prior conditioned on them (prior_classes > 0)."""
        return None

    def solve_prior(
        self,
        n: int,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        path: list[torch.Tensor] | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """draw_prior for a prior solved in steps (solved_prior): `steps` of the solver instead
        of the model's default, `path` receiving each step's codes."""
        raise NotImplementedError(f"{type(self).__name__} draws its prior in one step")

    @property
    def default_sampler(self) -> str:
        """What `aegen sample` draws codes from unless told: the prior for a model trained to
        match it, else a density fitted to the training codes."""
        return "prior" if self.variational else self.ex_post_sampler

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images [B, C, H, W] -> codes [B, latent_dim] (the posterior mean for a VAE)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [B, latent_dim] -> images [B, C, H, W] in value_range."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        """The training objective on a batch of images in value_range."""
        raise NotImplementedError

    def update_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups with their own optimizer; LossOutput.group_losses names each one's
        loss. One group minimising `loss` unless a model's update rule says otherwise."""
        return {"model": list(self.parameters())}

    def stages(self, epochs: int) -> list[Stage]:
        """The run's epochs in order, each stage naming the update groups that train in it: one
        stage of every group unless a model trains in stages (vq-vae: its prior after its
        autoencoder). The trainer sets `training_groups` to the stage's groups as it enters it."""
        return [Stage(tuple(self.update_groups()), 1, epochs)]

    def trains(self, group: str) -> bool:
        """Whether `group` trains now (training_groups None: outside the trainer, every one)."""
        return self.training_groups is None or group in self.training_groups

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Rebuild x through the code (deterministic: the VAE uses its posterior mean)."""
        return self.decode(self.encode(x, labels), labels)


def class_weights(labels: torch.Tensor | None, num_classes: int, batch: int) -> torch.Tensor:
    """Labels [B] (indices) or [B, num_classes] (weights) -> float weights [B, num_classes]."""
    if labels is None:
        raise ConfigError("this model is conditional: give the images' labels")
    if labels.dim() == 1:
        labels = torch.nn.functional.one_hot(labels.long(), num_classes)
    if labels.shape != (batch, num_classes):
        raise ConfigError(
            f"labels must have shape ({batch},) or ({batch}, {num_classes}), "
            f"got {tuple(labels.shape)}"
        )
    return labels.float()


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-ready values."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass from JSON values, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} option {unknown[0]!r}; known options: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    clean = {}
    for key, value in values.items():
        clean[key] = _coerce(key, value, hints[key])
    config = cls(**clean)
    config.check()
    return config


def _coerce(key: str, value: Any, hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option {key!r} must be a list of integers, got {value!r}")
        return tuple(_coerce(key, v, int) for v in value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"option {key!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"option {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"option {key!r} must be a finite number, got {value!r}")
        return float(value)
    return value


def require_positive(config: Any, may_be_zero: tuple[str, ...] = ()) -> None:
    """Every integer size in a model config must be at least 1 (those named: at least 0)."""
    for key, value in dataclasses.asdict(config).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        least = 0 if key in may_be_zero else 1
        if any(isinstance(v, int) and not isinstance(v, bool) and v < least for v in values):
            raise ConfigError(f"option {key!r} must be at least {least}, got {value}")


STAGE_SWITCHES = ("settled", "fixed")


def two_stages(
    epochs: int,
    prior_share: float,
    switch: str = "fixed",
    least_steps: int = 0,
    measure: str = "val_recon",
) -> list[Stage]:
    """An autoencoder's epochs, then its prior's (groups "autoencoder" and "prior": vq-vae, ldm);
    a single epoch trains both at once. "fixed": the prior gets the last `prior_share` of the
    epochs. "settled": the autoencoder stage ends once its held-out reconstruction (`measure`, a
    history key with no floor above 0) settles, after at least `least_steps` steps and 3 epochs,
    and at the latest where the prior's last `prior_share` of the epochs begins; the prior gets
    the rest."""
    if epochs < 2:
        return [Stage(("autoencoder", "prior"), 1, epochs)]
    prior = min(epochs - 1, max(1, round(epochs * prior_share)))
    if switch == "fixed":
        autoencoder = Stage(("autoencoder",), 1, epochs - prior)
    else:
        autoencoder = Stage(("autoencoder",), 1, epochs - prior, measure, least_steps, 3)
    return [autoencoder, Stage(("prior",), epochs - prior + 1, epochs)]
