"""The pictures every run folder gets: reconstructions, samples, latent scatter, loss curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegen.plots import save_image_grid, save_latent_scatter, save_loss_curves, \
    save_reconstructions

if TYPE_CHECKING:
    from aegen.api import TrainedModel

N_RECONSTRUCTIONS = 24
N_SAMPLES = 64
N_LATENT_POINTS = 2000


def write_run_pictures(trained: "TrainedModel", history: list[dict]) -> None:
    """Write reconstructions.png, samples.png, latent.png and loss.png into the run folder."""
    run_dir, held_out = trained.run_dir, trained.split("val")
    originals = held_out.images[:N_RECONSTRUCTIONS]
    save_reconstructions(run_dir / "reconstructions.png", originals.unsqueeze(1) / 255.0,
                         trained.reconstruct(originals))
    save_image_grid(run_dir / "samples.png", trained.sample(N_SAMPLES, seed=0), columns=8)
    points = slice(0, N_LATENT_POINTS)
    save_latent_scatter(run_dir / "latent.png", trained.encode(held_out.images[points]),
                        held_out.labels[points], held_out.classes,
                        f"{trained.name}: held-out {held_out.name} codes")
    if history:
        save_loss_curves(run_dir / "loss.png", history)
