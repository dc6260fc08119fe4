"""The pictures every run folder gets: reconstructions, samples, latent scatter, interpolations,
a latent manifold (2-d codes only), the denoising path (ldm only) and loss curves."""

from __future__ import annotations

import logging

import torch

from aegen.data.pixels import unit_images
from aegen.errors import ConfigError
from aegen.export.files import image_grid_png, save_image_grid
from aegen.files.atomic import write_atomic
from aegen.trained import TrainedModel
from aegen.views.figures import (
    save_latent_scatter,
    save_loss_curves,
    save_manifold,
    save_reconstructions,
)

log = logging.getLogger("aegen")

N_RECONSTRUCTIONS = 24
N_SAMPLES = 64
N_LATENT_POINTS = 2000
N_INTERPOLATIONS, INTERPOLATION_STEPS = 8, 10
N_DENOISED, DENOISING_COLUMNS = 8, 9


def interpolations(
    trained: TrainedModel,
    starts: torch.Tensor,
    ends: torch.Tensor,
    steps: int = INTERPOLATION_STEPS,
    start_labels: torch.Tensor | None = None,
    end_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decoded straight lines between the codes of pairs of images: [pairs * steps, 1, 28, 28].

    For a conditional model the one-hot labels travel along the same line, so the class
    blends from the start image's to the end image's.
    """
    a, b = trained.encode(starts, start_labels), trained.encode(ends, end_labels)
    weights = torch.linspace(0, 1, steps).view(1, steps, 1)
    path = a.unsqueeze(1) * (1 - weights) + b.unsqueeze(1) * weights  # [pairs, steps, latent]
    labels = None
    if trained.conditional:
        assert start_labels is not None and end_labels is not None  # encode() above needs them
        one_hot = [
            torch.nn.functional.one_hot(y.long(), trained.classes).float().unsqueeze(1)
            for y in (start_labels, end_labels)
        ]
        labels = (one_hot[0] * (1 - weights) + one_hot[1] * weights).reshape(-1, trained.classes)
    return trained.decode(path.reshape(-1, a.shape[1]), labels)


def run_sample_grid(
    trained: TrainedModel, seed: int = 0, sampler: str | None = None
) -> tuple[torch.Tensor, int]:
    """Samples for samples.png and its columns: 64 in 8 columns, or for a model that samples by
    label (a conditional one, or a labelled prior) one row of 8 per class."""
    if not trained.label_classes:
        return trained.sample(N_SAMPLES, seed=seed, sampler=sampler), 8
    labels = torch.arange(trained.label_classes).repeat_interleave(8)
    return trained.sample(len(labels), seed=seed, sampler=sampler, label=labels), 8


def shown_samplers(trained: TrainedModel) -> list[str]:
    """The samplers a run folder shows samples of: its default, and beside a weak fixed prior
    (the VAE family's N(0, I), the plain AEs' single Gaussian) a mixture fitted to the training
    codes, which the measured tables show to be the better generator of those models."""
    model, default = trained.model, trained.default_sampler
    if model.learned_prior or not model.continuous_codes or model.conditional:
        return [default]
    return list(dict.fromkeys([default, "gmm"]))


def denoising_paths(trained: TrainedModel, seed: int = 0) -> torch.Tensor:
    """N_DENOISED samples of a latent diffusion prior, each decoded at DENOISING_COLUMNS points
    of its path from noise to code, or after each step where it takes fewer (one row per
    sample, one per class where it has labels): [N_DENOISED * columns, C, H, W]."""
    model = trained.model
    classes = model.prior_classes
    labels = torch.arange(N_DENOISED) % classes if classes else None
    path: list[torch.Tensor] = []
    model.solve_prior(N_DENOISED, torch.Generator().manual_seed(seed), labels, path)
    columns = min(DENOISING_COLUMNS, len(path))  # 5 steps: each once, none repeated
    picked = torch.linspace(0, len(path) - 1, columns).round().long().tolist()
    codes = torch.stack([path[i] for i in picked], 1)  # [samples, columns, latent]
    return trained.decode(codes.flatten(0, 1))


def write_run_pictures(trained: TrainedModel, history: list[dict]) -> torch.Tensor:
    """Write every picture of the run folder from held-out (validation) images; returns the
    default sampler's samples (samples.png), which the run's diagnosis looks at too.
    samples-NAME.png holds each shown sampler's (shown_samplers), so that every picture of
    samples is named by what drew it."""
    run_dir, held_out = trained.run_dir, trained.split("val")
    originals, labels = held_out.images[:N_RECONSTRUCTIONS], held_out.labels[:N_RECONSTRUCTIONS]
    save_reconstructions(
        run_dir / "reconstructions.png",
        unit_images(originals),
        trained.reconstruct(originals, labels),
    )
    samples, columns = run_sample_grid(trained)
    save_image_grid(run_dir / "samples.png", samples, columns)
    for name in shown_samplers(trained):
        if name == trained.default_sampler:
            save_image_grid(run_dir / f"samples-{name}.png", samples, columns)
            continue
        try:
            grid = run_sample_grid(trained, sampler=name)
        except ConfigError as exc:  # too few training codes for the mixture: nothing to show
            log.info(f"no samples-{name}.png: {exc}")
            continue
        save_image_grid(run_dir / f"samples-{name}.png", *grid)
    points = slice(0, N_LATENT_POINTS)
    codes = trained.encode(held_out.images[points], held_out.labels[points])
    save_latent_scatter(
        run_dir / "latent.png",
        codes,
        held_out.labels[points],
        held_out.classes,
        f"{trained.name}: held-out {held_out.name} codes",
    )
    n_pairs = min(N_INTERPOLATIONS, len(held_out) // 2)
    if n_pairs:
        pairs, pair_labels = held_out.images[: 2 * n_pairs], held_out.labels[: 2 * n_pairs]
        strips = interpolations(
            trained,
            pairs[0::2],
            pairs[1::2],
            INTERPOLATION_STEPS,
            pair_labels[0::2],
            pair_labels[1::2],
        )
        write_atomic(run_dir / "interpolations.png", image_grid_png(strips, INTERPOLATION_STEPS))
    if trained.latent_dim == 2 and not trained.conditional:
        # A VAE's codes follow N(0, I); a plain AE's lie where training put them.
        variational = trained.model.variational
        centre = (0.0, 0.0) if variational else tuple(codes.mean(0).tolist())
        scale = (1.0, 1.0) if variational else tuple(codes.std(0).tolist())
        save_manifold(run_dir / "manifold.png", trained.decode, centre=centre, scale=scale)
    if trained.model.solved_prior:
        paths = denoising_paths(trained)
        write_atomic(run_dir / "denoising.png", image_grid_png(paths, len(paths) // N_DENOISED))
    if history:
        save_loss_curves(run_dir / "loss.png", history)
    return samples
