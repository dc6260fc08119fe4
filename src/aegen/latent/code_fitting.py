"""Fitting a small network to a run's codes: the part the learned samplers (flow, diffusion,
two-stage) share.

Codes are standardised per dimension (the networks then see numbers of unit scale whatever the
autoencoder did); a seeded tenth is held out; Adam with a cosine-decayed rate runs for a fixed
number of steps, the held-out loss is measured every `eval_every` steps (with a fixed noise
generator, so that stochastic losses compare), and fitting stops after `patience` measurements
without a better one. The best weights are kept. Everything is seeded: the same codes give the
same sampler.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from aegen.errors import ConfigError
from aegen.latent.sampler_state import check_state

log = logging.getLogger("aegen")


@dataclass(frozen=True)
class FitSettings:
    """How long and how fast a sampler network is fitted; the defaults are measured to fit
    54,000 codes within a minute on a 2-core CPU (bench/learned_samplers.py)."""

    max_steps: int = 6000
    batch_size: int = 512
    learning_rate: float = 2e-3
    eval_every: int = 250  # steps, or max_steps / 20 if fewer
    patience: int = 6  # held-out measurements without a gain of min_gain before it stops
    min_gain: float = 1e-3  # in the loss's units (per code dimension)
    held_out: float = 0.1
    max_held_out: int = 5000
    seed: int = 0


class CodeNetwork(nn.Module):
    """A network on standardised codes (and one-hot labels when conditional) with the loss it is
    fitted by; subclasses define `loss` (one number per code) and their sampler draws."""

    def __init__(self, latent_dim: int, classes: int):
        super().__init__()
        self.latent_dim, self.classes = latent_dim, classes

    def loss(self, u: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


def one_hot(labels: torch.Tensor | None, classes: int, n: int) -> torch.Tensor:
    """Labels as one-hot rows [n, classes] (class weights [n, classes] pass through); [n, 0]
    for an unconditional network."""
    if classes == 0:
        return torch.zeros(n, 0)
    if labels is None:
        raise ConfigError("this sampler was fitted with labels: it needs one per sample")
    labels = torch.as_tensor(labels)
    if labels.is_floating_point():
        if labels.shape != (n, classes):
            raise ConfigError(f"labels must be class indices or weights of shape ({n}, {classes})")
        return labels.float()
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise ConfigError(f"labels must be class indices in 0..{classes - 1}")
    return nn.functional.one_hot(labels.long().expand(n), classes).float()


def fit_network(
    network: CodeNetwork,
    codes: torch.Tensor,
    labels: torch.Tensor | None,
    settings: FitSettings,
    name: str,
) -> dict[str, float]:
    """Fit network (in place) to standardised codes; returns what the fit did (steps, held-out
    loss, seconds) for the log."""
    started = time.perf_counter()
    n = len(codes)
    if n < 20:
        raise ConfigError(f"fitting the {name} sampler needs at least 20 codes, got {n}")
    y_all = one_hot(labels, network.classes, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))
    held = min(max(2, round(n * settings.held_out)), settings.max_held_out)
    val_u, val_y = codes[order[:held]], y_all[order[:held]]
    train_u, train_y = codes[order[held:]], y_all[order[held:]]
    batch = min(settings.batch_size, len(train_u))
    max_steps = settings.max_steps  # small code sets stop early on the held-out ones instead
    eval_every = max(1, min(settings.eval_every, max_steps // 20))  # >= 20 looks at held-out

    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max_steps)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    best, best_state, since_best, step = float("inf"), copy.deepcopy(network.state_dict()), 0, 0
    bar = tqdm(total=max_steps, desc=f"fitting the {name} sampler", disable=None)
    try:
        while step < max_steps and since_best < settings.patience:
            shuffled = torch.randperm(len(train_u), generator=generator)
            for start in range(0, len(train_u) - batch + 1, batch):
                index = shuffled[start : start + batch]
                loss = network.loss(train_u[index], train_y[index], generator).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                bar.update()
                if step % eval_every == 0 or step == max_steps:
                    held_out = held_out_loss(network, val_u, val_y, settings.seed)
                    # patience restarts only for a real gain, the best weights for any (NaN: none)
                    since_best = 0 if held_out < best - settings.min_gain else since_best + 1
                    if held_out < best:
                        best, best_state = held_out, copy.deepcopy(network.state_dict())
                    bar.set_postfix(held_out=f"{held_out:.4g}")
                if step >= max_steps or since_best >= settings.patience:
                    break
    finally:
        bar.close()
    if best == float("inf"):
        raise ConfigError(f"fitting the {name} sampler failed: its held-out loss is not finite")
    network.load_state_dict(best_state)
    seconds = time.perf_counter() - started
    log.info(f"fitted the {name} sampler: {step} steps, held-out loss {best:.4g}, {seconds:.1f} s")
    return {"steps": step, "held_out_loss": best, "seconds": seconds}


@torch.no_grad()
def held_out_loss(network: CodeNetwork, u: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    """Mean loss on the held-out codes, with the same noise every time it is measured."""
    network.eval()
    generator = torch.Generator().manual_seed(seed + 2)
    total = sum(
        network.loss(u_part, y_part, generator).sum().item()
        for u_part, y_part in zip(u.split(2048), y.split(2048))
    )
    network.train()
    return total / len(u)


class Standardiser(nn.Module):
    """Per-dimension mean and scale of the training codes, saved with the sampler."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def fit(self, codes: torch.Tensor) -> None:
        self.mean.copy_(codes.mean(0))
        # A constant dimension (a collapsed VAE unit) keeps a tiny scale instead of dividing by 0.
        self.scale.copy_(codes.std(0).clamp_min(1e-6))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.mean) / self.scale

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.scale + self.mean


def mlp(inputs: int, hidden: int, outputs: int, layers: int = 2) -> nn.Sequential:
    """Linear-SiLU layers; the last layer starts at zero, so a fresh flow is the identity and a
    fresh velocity field is still."""
    sizes = [inputs] + [hidden] * layers
    parts: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        parts += [nn.Linear(a, b), nn.SiLU()]
    last = nn.Linear(hidden, outputs)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*parts, last)


class NetworkSampler:
    """A sampler whose density is a network fitted to standardised codes; subclasses say how
    the network is built (`build`) and how it draws standardised codes (`draw`)."""

    name = "network"
    settings = FitSettings()

    def __init__(self, latent_dim: int, classes: int = 0):
        self.latent_dim, self.classes = latent_dim, classes
        self.standardiser = Standardiser(latent_dim)
        self.network = self._seeded_build()
        self.fit_record: dict[str, float] = {}

    @property
    def conditional(self) -> bool:
        """Whether it was built to take a label per sample (fitted to a conditional model)."""
        return self.classes > 0

    def build(self) -> CodeNetwork:
        raise NotImplementedError

    def draw(self, n: int, generator: torch.Generator, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _seeded_build(self) -> CodeNetwork:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            return self.build()

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> NetworkSampler:
        codes = torch.as_tensor(codes, dtype=torch.float32)
        self.standardiser.fit(codes)
        self.network = self._seeded_build()
        self.fit_record = fit_network(
            self.network, self.standardiser(codes), labels, self.settings, self.name
        )
        self.network.eval()
        return self

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.network.eval()
        u = self.draw(n, generator, one_hot(labels, self.classes, n))
        return self.standardiser.inverse(u)

    def state(self) -> dict[str, torch.Tensor]:
        parts = {"standardiser": self.standardiser, "network": self.network}
        return {
            f"{part}.{key}": value.contiguous()
            for part, module in parts.items()
            for key, value in module.state_dict().items()
        }

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        check_state(self, tensors)
        for part, module in (("standardiser", self.standardiser), ("network", self.network)):
            prefix = f"{part}."
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        self.network.eval()
