"""The model registry: preset name -> model class, description and option defaults.

Adding a model is one file and one line: a module in this folder with its config dataclass and
its `Autoencoder` subclass (which names the config as `config_class`), and its entry in PRESETS
below. The CLI's help, `aegen models`, the docs' reference pages and the report read PRESETS.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from typing import Any

from aegen.errors import ConfigError
from aegen.models.base import (
    Autoencoder,
    LossOutput,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    option_meanings,
)
from aegen.names import closest


@dataclass(frozen=True)
class Preset:
    """A named model: where its module class lives ("aegen.models.rae:RAE"; the class names its
    config class and declares its optimizer defaults), a one-line description and the options
    it sets beyond its config class's defaults (a variant users know by its own name, e.g.
    beta-vae: the VAE with a KL weight). The class is imported when first used."""

    model: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def model_class(self) -> type[Autoencoder]:
        return _import_class(self.model)

    @property
    def config_class(self) -> type[ModelConfig]:
        return self.model_class.config_class

    def option_defaults(self) -> list[tuple[str, Any, str]]:
        """(name, default, meaning) of each option, with this preset's own defaults."""
        return [
            (name, self.defaults.get(name, default), meaning)
            for name, default, meaning in option_meanings(self.config_class)
        ]


PRESETS: dict[str, Preset] = {
    "ae": Preset(
        "aegen.models.ae:FullyConnectedAE",
        "fully-connected autoencoder 784-128-64-12-3, Tanh output, MSE",
    ),
    "conv-ae": Preset(
        "aegen.models.conv_ae:ConvAE",
        "convolutional autoencoder 16/8 channels, 8x2x2 code, Tanh output, MSE",
    ),
    "vae": Preset(
        "aegen.models.vae:VAE", "variational autoencoder 784-400-20, sigmoid output, BCE + KL"
    ),
    "beta-vae": Preset(
        "aegen.models.vae:VAE",
        "beta-VAE (Higgins et al. 2017): the VAE 784-400-20 with the KL term weighted by 4",
        {"kl_weight": 4.0},
    ),
    "iwae": Preset(
        "aegen.models.vae:VAE",
        "IWAE (Burda et al. 2016): the VAE 784-400-20 trained on the 5-sample importance bound",
        {"importance_samples": 5},
    ),
    "conv-vae": Preset(
        "aegen.models.conv_vae:ConvVAE",
        "convolutional VAE 32/64 channels, 20-d code, sigmoid output, BCE + KL",
    ),
    "cvae": Preset(
        "aegen.models.cvae:CVAE", "conditional VAE 784+10-400-2, label into encoder and decoder"
    ),
    "vae-gan": Preset(
        "aegen.models.vae_gan:VAEGAN",
        "VAE-GAN: conv VAE, reconstruction in a discriminator's features, GAN loss; 3 optimizers",
    ),
    "rae": Preset(
        "aegen.models.rae:RAE",
        "regularised AE (Ghosh et al. 2020): conv, 16-d code, code and decoder L2 penalties; "
        "sampled from a mixture fitted to its codes",
    ),
    "wae": Preset(
        "aegen.models.wae:WAE",
        "Wasserstein AE (Tolstikhin et al. 2018): conv, 8-d code, MMD to N(0, I) with an "
        "inverse multiquadric kernel",
    ),
    "aae": Preset(
        "aegen.models.aae:AAE",
        "adversarial AE (Makhzani et al. 2015): conv, 8-d code, a discriminator on codes "
        "against N(0, I); 2 optimizers",
    ),
    "vamp": Preset(
        "aegen.models.vamp:VampVAE",
        "VAE with the VampPrior (Tomczak & Welling 2018): the VAE 784-400-20 whose prior is "
        "a mixture of its posteriors at 500 learned pseudo-inputs",
    ),
    "vq-vae": Preset(
        "aegen.models.vq_vae:VQVAE",
        "VQ-VAE (van den Oord et al. 2017): conv, 7x7 grid of 16-d codes from a 128-entry EMA "
        "codebook; a PixelCNN prior over its indices; 2 optimizers",
    ),
    "ldm": Preset(
        "aegen.models.ldm:LatentDiffusion",
        "latent diffusion (after Rombach et al. 2022): conv AE with a KL-regularised 4x7x7 "
        "code, then a flow-matching prior on the codes, label-guided; 2 stages",
    ),
}


@functools.cache
def _import_class(where: str) -> type[Autoencoder]:
    module, _, name = where.partition(":")
    found = getattr(importlib.import_module(module), name)
    if not (isinstance(found, type) and issubclass(found, Autoencoder)):
        raise TypeError(f"{where} is not an aegen.models.base.Autoencoder")
    return found


def preset(name: str) -> Preset:
    """The preset called name, or a ConfigError that suggests the closest one."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}{closest(name, PRESETS)}; choose one of {', '.join(PRESETS)}"
        ) from None


# What an option added after runs were recorded meant before it existed: a recorded config
# without the key is built as it was then (its weights load, its resume goes on as it began).
RECORDED_BEFORE_OPTION = {
    "upsample": "transpose",
    "stage_switch": "fixed",
    "guidance_from": 0.0,  # ldm's guidance applied at every step of the flow
    "guidance_to": 1.0,
    "solver": "heun",
}


def build_model(name: str, options: dict[str, Any] | None = None) -> Autoencoder:
    """A freshly initialised model of preset name, with options overriding its config."""
    entry = preset(name)
    return entry.model_class(
        config_from_dict(entry.config_class, {**entry.defaults, **(options or {})})
    )


def build_recorded_model(name: str, recorded: dict[str, Any]) -> Autoencoder:
    """A freshly initialised model as a run's config.json records it (options it predates take
    their meaning from before them: RECORDED_BEFORE_OPTION)."""
    fields = {f.name for f in dataclasses.fields(preset(name).config_class)}
    before = {k: v for k, v in RECORDED_BEFORE_OPTION.items() if k in fields}
    return build_model(name, {**before, **recorded})


__all__ = [
    "PRESETS",
    "Preset",
    "Autoencoder",
    "LossOutput",
    "ModelConfig",
    "build_model",
    "build_recorded_model",
    "preset",
    "option_meanings",
    "config_to_dict",
    "config_from_dict",
]
