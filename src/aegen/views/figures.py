"""Figures: reconstructions, latent scatter plots, loss curves and manifolds (matplotlib).

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display needed)
and written atomically like every other run file.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aegen.export.files import image_grid_png, save_image_grid
from aegen.files.atomic import write_atomic


def save_reconstructions(
    path: Path, originals: torch.Tensor, rebuilt: torch.Tensor, columns: int = 12
) -> None:
    """Originals in the upper rows, their reconstructions in the same places below."""
    save_image_grid(path, torch.cat([originals, rebuilt]), columns)


def figure_png(fig: Figure) -> bytes:
    """A matplotlib Figure rendered on the Agg canvas as PNG bytes."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def project_2d(codes: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Codes [N, D] -> [N, 2] and axis names: as they are for D <= 2, else the first two PCs."""
    codes = codes.double()
    if codes.shape[1] == 1:
        return torch.cat([codes, torch.zeros_like(codes)], 1), "z1"
    if codes.shape[1] == 2:
        return codes, "z"
    centred = codes - codes.mean(0)
    _, singular, basis = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ basis[:2].T
    if points.shape[1] < 2:  # a single code has a single (zero) principal direction
        points = torch.cat(
            [points, torch.zeros(len(points), 2 - points.shape[1], dtype=points.dtype)], 1
        )
    total = (singular**2).sum()
    explained = (singular[:2] ** 2).sum() / total if total > 0 else torch.tensor(0.0)
    return points, f"PCA of the {codes.shape[1]}-d code ({explained:.0%} of variance)"


def save_latent_scatter(
    path: Path, codes: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], title: str
) -> None:
    """Held-out codes coloured by label (one colour for unlabelled images, whose labels are -1):
    a 3-d scatter for 3-d codes, else a 2-d projection."""
    codes, labels = codes.detach().cpu(), labels.cpu()
    fig = Figure(figsize=(7, 6))
    palette = [f"C{i}" for i in range(10)]
    groups = list(enumerate(classes)) if classes else [(-1, "unlabelled images")]
    if codes.shape[1] == 3:
        ax = fig.add_subplot(projection="3d")
        for k, name in groups:
            pick = labels == k
            ax.scatter(*codes[pick].T.numpy(), s=4, c=palette[k % 10], label=name, depthshade=False)
        ax.set(xlabel="z1", ylabel="z2", zlabel="z3")
        projection = "the 3-d code"
    else:
        points, projection = project_2d(codes)
        ax = fig.add_subplot()
        for k, name in groups:
            pick = labels == k
            xs, ys = points[pick].T.numpy()
            ax.scatter(xs, ys, s=4, c=palette[k % 10], label=name)
        axis = "PC" if projection.startswith("PCA") else "z"
        ax.set(xlabel=f"{axis}1", ylabel=f"{axis}2")
    ax.set_title(f"{title}\n{projection}", fontsize=10)
    ax.legend(markerscale=3, fontsize=7, loc="upper right")
    write_atomic(path, figure_png(fig))


def save_loss_curves(path: Path, history: list[dict]) -> None:
    """Train and validation loss per epoch; a second panel for the loss terms when there are any."""
    epochs = [m["epoch"] for m in history]
    terms = sorted(
        {k[len("val_") :] for m in history for k in m if k.startswith("val_") and k != "val_loss"}
    )
    fig = Figure(figsize=(10 if terms else 5.5, 4))
    ax = fig.add_subplot(1, 2 if terms else 1, 1)
    ax.plot(epochs, [m["loss"] for m in history], "-", label="train")
    ax.plot(epochs, [m["val_loss"] for m in history], "--", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    ax.legend()
    if terms:
        ax2 = fig.add_subplot(1, 2, 2)
        for i, term in enumerate(terms):
            ax2.plot(epochs, [m[term] for m in history], "-", color=f"C{i}", label=f"train {term}")
            ax2.plot(
                epochs,
                [m[f"val_{term}"] for m in history],
                "--",
                color=f"C{i}",
                label=f"val {term}",
            )
        ax2.set(xlabel="epoch", ylabel="nats per image", title="loss terms")
        ax2.legend()
    write_atomic(path, figure_png(fig))


def save_manifold(
    path: Path,
    decode,
    span: float = 2.5,
    steps: int = 15,
    centre: tuple[float, float] = (0.0, 0.0),
    scale: tuple[float, float] = (1.0, 1.0),
) -> None:
    """Decode a regular steps x steps grid of 2-d codes (centre +- span * scale) into one picture.

    Rows run from high z2 (top) to low, columns from low z1 (left) to high, like a plot's axes.
    """
    offsets = torch.linspace(-span, span, steps)
    z1 = centre[0] + offsets * scale[0]
    z2 = centre[1] + offsets.flip(0) * scale[1]
    grid = torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], -1).reshape(-1, 2)
    write_atomic(path, image_grid_png(decode(grid), steps, scale=1))


def png_data_url(png: bytes) -> str:
    """PNG bytes as a data: URL that an <img> shows without any other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
