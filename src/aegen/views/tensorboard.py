"""`--tensorboard`: TensorBoard event files under RUN/tensorboard/, written by an epoch callback.

Per epoch: every loss term (train and validation), the learning rate, the KL weight and the
epoch's seconds; every IMAGES_EVERY epochs and after the last one, a grid of samples (the prior
for a VAE, a Gaussian fitted to held-out codes otherwise, with fixed noise so that the grids
show the model changing, not the draws) and of held-out images above their reconstructions.
A resumed run drops the events past the epoch it resumes from (purge_step), so the curves never
fold back on themselves. Needs the tensorboard package (aegen[tensorboard]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aegen.data.pixels import unit_images
from aegen.errors import ConfigError
from aegen.latent.samplers import make_sampler

FOLDER = "tensorboard"
IMAGES_EVERY = 5
GRID = 64  # samples drawn per grid
ROW = 8  # held-out images (and their reconstructions) per grid
FIT_IMAGES = 1000  # held-out images whose codes a plain autoencoder's Gaussian is fitted to


class TensorBoardLog:
    """The callback that writes a run's TensorBoard events."""

    def __init__(
        self,
        run_dir: Path,
        start_epoch: int,
        held_out: torch.Tensor,
        held_out_labels: torch.Tensor,
    ):
        self.writer = summary_writer()(str(Path(run_dir) / FOLDER), purge_step=start_epoch + 1)
        self.held_out, self.held_out_labels = held_out[:FIT_IMAGES], held_out_labels[:FIT_IMAGES]
        self.latest: tuple[Any, int] | None = None  # a run whose grids are not written yet

    def on_epoch_end(self, run: Any, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if name != "epoch":
                self.writer.add_scalar(_tag(name), value, epoch)
        self.latest = (run, epoch)
        if epoch % IMAGES_EVERY == 0:
            self._grids()
        self.writer.flush()

    def close(self) -> None:
        """Write the last epoch's grids (if not yet written) and close the files."""
        self._grids()
        self.writer.close()

    def _grids(self) -> None:
        if self.latest is None:
            return
        run, epoch = self.latest
        self.latest = None
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(GRID) % run.classes if run.conditional else None
        # The model's prior where it samples one (vamp's mixture, vq-vae's PixelCNN); else a
        # Gaussian on held-out codes, fitted here, not saved in the run (a progress view only).
        if run.model.default_sampler == "prior":
            sampler = run.sampler("prior")
        else:
            sampler = make_sampler("gaussian", run.latent_dim)
            sampler.fit(run.encode(self.held_out, self.held_out_labels))
        samples = run.decode(sampler.sample(GRID, generator), labels)
        originals = unit_images(self.held_out[:ROW])
        rebuilt = run.reconstruct(self.held_out[:ROW], self.held_out_labels[:ROW])
        self.writer.add_images("samples", samples, epoch)
        self.writer.add_images("reconstructions", torch.cat([originals, rebuilt]), epoch)


def summary_writer() -> type:
    """torch's SummaryWriter, or one line saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'aegen[tensorboard]'"
        ) from None
    return SummaryWriter


def _tag(name: str) -> str:
    """A metric's TensorBoard tag: loss/train, loss/val, kl/train, ..., lr, kl_weight."""
    if name.startswith("val_"):
        return f"{name[4:]}/val"
    if name in ("lr", "kl_weight", "seconds"):
        return name
    return f"{name}/train"
