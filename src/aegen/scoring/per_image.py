"""Per-image scores behind `aegen score`: how well a run rebuilds, and for a VAE how likely it
finds, each image, so that images unlike its training data (foreign data) can be told apart.

Unlike scores.py, which averages over the run's own test split, every score here stays per image:
an AUROC between in- and out-of-distribution images is computed from them. Images of another
size or channel count are brought to the run's model shape first, as training would have.

The file written holds one row per image: `index`, `label` (the run's class index when the
images' class names are among the run's, else their own; -1 for unlabelled images), `name`
(a folder's file, relative to the folder; absent for arrays and built-in sets), then the score
columns `recon_mse` and, for models with a pixel likelihood, `elbo` and `nll` (nats per image).
A .csv has them as its header; a .json is `{"columns": [...], "rows": [[...], ...]}`, the same
table (`pandas.DataFrame(rows, columns=columns)`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from aegen.data.datasets import DATASET_NAMES, ImageSet, load_dataset
from aegen.data.decode import image_files
from aegen.data.pixels import unit_images
from aegen.errors import ConfigError, DataError
from aegen.export.files import check_suffix
from aegen.files.atomic import write_atomic
from aegen.latent.likelihood import per_image_elbo_and_nll
from aegen.models.vae import BernoulliVAE
from aegen.settings.evaluate import EVAL_BATCH, MOST_NLL_K
from aegen.trained import TrainedModel

SCORE_FORMATS = (".csv", ".json")
RECONSTRUCT_BATCH = 4 * EVAL_BATCH  # images held as floats at a time while rebuilding


def check_scores_output(path: Path) -> None:
    """Refuse, before any work, a file name whose format write_scores cannot write."""
    check_suffix(path, SCORE_FORMATS)


def source_name(source: str) -> str:
    """A short name for the images: the data set's name, or the folder's or array file's."""
    if source in DATASET_NAMES:
        return source
    path = Path(source).expanduser().resolve()
    return path.stem if path.suffix.lower() in (".npy", ".npz") else path.name


def images_to_score(
    trained: TrainedModel, source: str, data_root: str | Path | None = None
) -> ImageSet:
    """The images a source names, at the run's model shape: a built-in data set's test split
    (from data_root, else the run's), or every image of a folder or .npy/.npz array."""
    channels, size, _ = trained.model.image_shape
    if source in DATASET_NAMES:
        root = data_root if data_root is not None else trained.data_root
        data = load_dataset(source, "test", root, image_size=size, channels=channels)
    else:
        background = trained.config.settings.background  # as the run's images
        data = load_dataset(
            source, "train", image_size=size, channels=channels, background=background
        )
    data = with_run_classes(trained, data)
    check_labels(trained, data, source)
    return data


def with_run_classes(trained: TrainedModel, data: ImageSet) -> ImageSet:
    """The images with labels renumbered to the run's classes when every class name of theirs
    is one the run trained with: an array labelled only 3 and 7 (classes "3" and "7", indices
    0 and 1 on loading) keeps the labels 3 and 7 an MNIST run knows them by."""
    run_classes = list(trained.config.data.classes)
    if not data.labelled or not set(data.classes) <= set(run_classes):
        return data
    index = torch.tensor([run_classes.index(name) for name in data.classes])
    return dataclasses.replace(data, labels=index[data.labels], classes=tuple(run_classes))


def check_labels(trained: TrainedModel, data: ImageSet, source: str) -> None:
    """A conditional model scores an image given its label: refuse images without one, or with
    labels the model has no class for."""
    if not trained.conditional:
        return
    if not data.labelled:
        raise DataError(
            f"{source} has no labels, but {trained.name} is conditional and scores each image "
            "given its label; give a folder with one sub-folder per class or an .npz with 'labels'"
        )
    run_classes = trained.config.data.classes
    if run_classes and data.classes != run_classes:
        raise DataError(
            f"{source}'s classes ({', '.join(data.classes[:4])}, ...) are not among those "
            f"{trained.name} trained with ({', '.join(run_classes[:4])}, ...): a conditional "
            "model scores an image given a label it knows"
        )
    if len(data) and int(data.labels.max()) >= trained.classes:
        raise DataError(
            f"{source} has labels up to {int(data.labels.max())}, but {trained.name} knows only "
            f"the classes 0..{trained.classes - 1}"
        )


def image_names(source: str, data: ImageSet) -> list[str] | None:
    """Each image's file, relative to its folder, in the order loaded; None for arrays and
    built-in sets (their index names them)."""
    folder = Path(source).expanduser()
    if source in DATASET_NAMES or not folder.is_dir():
        return None
    files = image_files(folder.resolve())
    if len(files) != len(data):  # the folder changed since it was read
        return None
    return [os.path.relpath(f.path, folder.resolve()) for f in files]


@torch.no_grad()
def per_image_scores(
    trained: TrainedModel, data: ImageSet, nll_k: int = MOST_NLL_K, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Per-image scores, each a float tensor [N] on the CPU: `recon_mse`, the mean squared error
    in [0, 1] between an image and its reconstruction; for models with a pixel likelihood also
    `elbo` and `nll`, importance-sampled with nll_k draws (nats per image)."""
    if nll_k < 1:
        raise ConfigError(f"the number of importance samples must be at least 1, got {nll_k}")
    check_labels(trained, data, data.name)
    errors = []
    for chunk, labels in zip(
        data.images.split(RECONSTRUCT_BATCH), data.labels.split(RECONSTRUCT_BATCH)
    ):
        rebuilt = trained.reconstruct(chunk, labels)
        errors.append((rebuilt - unit_images(chunk)).pow(2).flatten(1).mean(1))
    scores = {"recon_mse": torch.cat(errors)}
    if trained.model.pixel_likelihood:
        model = trained.model
        assert isinstance(model, BernoulliVAE)  # the models with a pixel likelihood
        device = next(model.parameters()).device
        labels = data.labels.to(device) if trained.conditional else None
        elbo, nll = per_image_elbo_and_nll(
            model, data.images.to(device), nll_k, seed, labels=labels
        )
        scores.update(elbo=elbo.cpu(), nll=nll.cpu())
    return scores


def write_scores(
    path: Path, scores: dict[str, torch.Tensor], labels: torch.Tensor, names: list[str] | None
) -> None:
    """Write one row per image (index, label, name if given, then the scores) as .csv or .json,
    atomically (see the module's docstring for the layout)."""
    check_scores_output(path)
    columns = ["index", "label", *(["name"] if names is not None else []), *scores]
    values = [shortest_floats(score) for score in scores.values()]
    rows = [
        [index, int(label), *([names[index]] if names is not None else []), *row]
        for index, (label, *row) in enumerate(zip(labels.tolist(), *values))
    ]
    if path.suffix.lower() == ".json":
        payload = json.dumps({"columns": columns, "rows": rows}) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        payload = buffer.getvalue()
    write_atomic(path, payload.encode())


def shortest_floats(score: torch.Tensor) -> list[float]:
    """A score's values as the shortest decimals that give back the same float32 (0.001, not
    0.0010000000474974513); other dtypes as they are."""
    values = score.detach().cpu().numpy()
    if values.dtype != np.float32:
        return values.tolist()
    return [float(str(value)) for value in values]
