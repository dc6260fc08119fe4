"""The pictures every run folder gets: reconstructions, samples, latent scatter, interpolations,
a latent manifold (2-d codes only) and loss curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from aegen.data import unit_images
from aegen.files import write_atomic
from aegen.plots import image_grid_png, save_image_grid, save_latent_scatter, save_loss_curves, \
    save_manifold, save_reconstructions

if TYPE_CHECKING:
    from aegen.api import TrainedModel

N_RECONSTRUCTIONS = 24
N_SAMPLES = 64
N_LATENT_POINTS = 2000
N_INTERPOLATIONS, INTERPOLATION_STEPS = 8, 10


def interpolations(trained: "TrainedModel", starts: torch.Tensor, ends: torch.Tensor,
                   steps: int = INTERPOLATION_STEPS) -> torch.Tensor:
    """Decoded straight lines between the codes of pairs of images: [pairs * steps, 1, 28, 28]."""
    a, b = trained.encode(starts), trained.encode(ends)
    weights = torch.linspace(0, 1, steps).view(1, steps, 1)
    path = a.unsqueeze(1) * (1 - weights) + b.unsqueeze(1) * weights  # [pairs, steps, latent]
    return trained.decode(path.reshape(-1, a.shape[1]))


def write_run_pictures(trained: "TrainedModel", history: list[dict]) -> None:
    """Write every picture of the run folder from held-out (validation) images."""
    run_dir, held_out = trained.run_dir, trained.split("val")
    originals = held_out.images[:N_RECONSTRUCTIONS]
    save_reconstructions(run_dir / "reconstructions.png", unit_images(originals),
                         trained.reconstruct(originals))
    save_image_grid(run_dir / "samples.png", trained.sample(N_SAMPLES, seed=0), columns=8)
    points = slice(0, N_LATENT_POINTS)
    codes = trained.encode(held_out.images[points])
    save_latent_scatter(run_dir / "latent.png", codes, held_out.labels[points], held_out.classes,
                        f"{trained.name}: held-out {held_out.name} codes")
    n_pairs = min(N_INTERPOLATIONS, len(held_out) // 2)
    if n_pairs:
        pairs = held_out.images[:2 * n_pairs]
        strips = interpolations(trained, pairs[0::2], pairs[1::2])
        write_atomic(run_dir / "interpolations.png", image_grid_png(strips, INTERPOLATION_STEPS))
    if trained.latent_dim == 2:
        # A VAE's codes follow N(0, I); a plain AE's lie where training put them.
        variational = trained.model.variational
        centre = (0.0, 0.0) if variational else tuple(codes.mean(0).tolist())
        scale = (1.0, 1.0) if variational else tuple(codes.std(0).tolist())
        save_manifold(run_dir / "manifold.png", trained.decode, centre=centre, scale=scale)
    if history:
        save_loss_curves(run_dir / "loss.png", history)
