"""Checking a saved sampler's tensors against the ones the sampler itself would hold."""

from __future__ import annotations

from typing import Protocol

import torch

from aegen.errors import ConfigError


class HasState(Protocol):
    name: str

    def state(self) -> dict[str, torch.Tensor]: ...


def check_state(sampler: HasState, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a saved state whose tensors are not the sampler's own (names, shapes and dtypes,
    which follow from its name, the latent size and the classes) or not finite."""
    wanted = sampler.state()
    if set(tensors) != set(wanted):
        raise ConfigError(
            f"the saved {sampler.name} sampler holds the tensors {sorted(tensors)}, "
            f"not {sorted(wanted)}"
        )
    for key, value in wanted.items():
        saved = tensors[key]
        if saved.shape != value.shape or saved.dtype != value.dtype:
            raise ConfigError(
                f"the saved {sampler.name} sampler's {key!r} is {saved.dtype} of shape "
                f"{tuple(saved.shape)}; its name and the model's latent size need {value.dtype} "
                f"of shape {tuple(value.shape)}"
            )
        if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
            raise ConfigError(f"the saved {sampler.name} sampler's {key!r} is not finite")
