"""Every evaluation setting, defined once.

`EvalSettings` is to `aegen evaluate` what `TrainSettings` (settings/train.py) is to training:
the one place a setting is written, with its default, its bounds and its meaning. The CLI's
`evaluate` flags and their help, the same flags of the other commands that read a run
(`--data-root`, `--weights`, `--seed`, `--nll-k`) and `aegen.evaluate`'s keyword arguments come
from it (tests/cli/test_registries.py holds them to that). Where the sample count or the NLL's
draws are left open (None), scoring/budget.py sizes them from the data and the training, between
the bounds written here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aegen.errors import ConfigError
from aegen.names import closest
from aegen.settings.train import SETTINGS as TRAIN_SETTINGS
from aegen.settings.train import check_value, setting

WEIGHTS = ("best", "last")  # a run's weights: its best epoch's, or its last epoch's
EVAL_BATCH = 1024  # images per forward pass when a model encodes, decodes or scores many
LEAST_SAMPLES = 1_000  # samples per sampler the budget draws at least (precision, recall, KID)
MOST_SAMPLES = 10_000  # and at most; what the experiments draw
NLL_DRAWS = (1000, 500, 200, 100)  # the NLL's posterior draws per image the budget picks from
MOST_DRAWN = 100_000  # samples per sampler, or NLL draws per image, one command may ask for
MOST_NLL_K = NLL_DRAWS[0]  # the draws where no budget sizes them: `aegen score`, the experiments


def eval_setting(default: Any, meaning: str, *, unset: str = "", **bounds: Any) -> Any:
    """A field as settings/train.py's `setting` makes it (meaning, flag, bounds, metavar), plus
    what its default None stands for (`unset`, said in the help as "default: ...")."""
    spec = setting(default, meaning, section="evaluate", **bounds)
    return dataclasses.field(default=default, metadata={**spec.metadata, "unset": unset})


@dataclass
class EvalSettings:
    """How a run is evaluated. None: the model's own samplers, the budget's counts, the run's
    recorded data root and best weights, every usable core."""

    samplers: list[str] | None = eval_setting(
        None,
        "a sampler to score, repeatable; the learned ones take a minute each to fit",
        unset="the model's standard ones",
        flag="--sampler",
        metavar="NAME",
    )
    n_samples: int | None = eval_setting(
        None,
        "samples drawn per sampler",
        unset=f"as many as the reference has images, at least {LEAST_SAMPLES:,d} and at most "
        f"{MOST_SAMPLES:,d}, and no more than the training split holds; the real data and "
        "floor rows score as many",
        minimum=1,
        maximum=MOST_DRAWN,
        metavar="N",
        label="samples per sampler",
    )
    nll_k: int | None = eval_setting(
        None,
        "importance samples per image for the VAE's NLL",
        unset=f"the most of {', '.join(map(str, NLL_DRAWS))} whose decoded draws stay within "
        "the images the training saw",
        minimum=1,
        maximum=MOST_DRAWN,
        metavar="K",
        label="importance samples per image",
    )
    threads: int | None = eval_setting(
        None,
        "CPU threads torch may use",
        unset="every usable core",
        minimum=1,
        maximum=1024,
        metavar="N",
    )
    seed: int = eval_setting(0, "seeds every draw")
    weights: str | None = eval_setting(
        None,
        "which of the run's weights: best, model-best.safetensors, from the epoch with the "
        "lowest validation loss; or last, model.safetensors, from the last epoch",
        unset="the best where the run has them",
        choices=WEIGHTS,
    )
    # One meaning for every command that reads data: training's own (settings/train.py).
    data_root: str | None = eval_setting(
        None, TRAIN_SETTINGS["data_root"].metadata["meaning"], metavar="DIR"
    )

    def check(self) -> None:
        """Raise ConfigError for a value out of its bounds or of the wrong type."""
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name != "samplers":
                check_value(spec, value)
            elif value is not None and not (
                isinstance(value, list) and all(isinstance(name, str) for name in value)
            ):
                raise ConfigError(f"samplers must be a list of sampler names, got {value!r}")


SETTINGS = {f.name: f for f in dataclasses.fields(EvalSettings)}


def eval_settings_from(
    settings: EvalSettings | list[str] | None,
    overrides: dict[str, Any],
    source: str = "aegen.evaluate's arguments",
) -> EvalSettings:
    """EvalSettings from a whole one (or only the samplers' names) and fields given by name;
    unknown names and bad values are refused with the name and where it came from."""
    for key in overrides:
        if key not in SETTINGS:
            raise ConfigError(
                f"unknown setting {key!r}{closest(key, SETTINGS)} in {source}; "
                f"known settings: {', '.join(SETTINGS)}"
            )
    if isinstance(settings, list):
        settings = EvalSettings(samplers=settings)
    values: dict[str, Any] = {
        key: str(value) if isinstance(value, Path) else value for key, value in overrides.items()
    }
    chosen = dataclasses.replace(settings or EvalSettings(), **values)
    chosen.check()
    return chosen
