"""ldm's sampling ways scored by a judge that shares nothing with aegen's (issue #33, item 2):
another model family, other training images, other code.

aegen's judge is a CNN trained on the run's training split, and FD-aegen, precision and recall
are computed in its features by aegen's own functions. The independent judge here is
scikit-learn's MLP classifier (two ReLU layers of 256 and 128) trained on the first half of the
data set's test split; the second half is its reference. On each way's samples it gives:

- FD in the MLP's 128 hidden features and FD in the 50 principal components of the pixels
  (fitted on the same first half), both by scipy's matrix square root;
- precision and recall (k = 3) in the MLP's features, by scikit-learn's nearest neighbours
  (each point checked against the balls of its 4 nearest others only: manifold_share);
- label accuracy: the share of samples drawn for label y that the MLP classifies as y (the
  samples are drawn for labels spread evenly over the classes, the same labels for every way).

Every way draws the same noise and labels; aegen's own FD-aegen is computed on the same images
beside it. Ways are those of ldm_sampling.py (SOLVER-STEPS[:gLO-HI]).

    AEGEN_DATA=../shared/data .venv/bin/python bench/independent_judge.py RUN_DIR ... -n 3000
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier

from aegen.experiments.hardware import hardware
from aegen.models import code_denoiser
from aegen.trained import TrainedModel, load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ldm_sampling import CountedPrior, ways_arguments  # noqa: E402
from learned_samplers import Judge  # noqa: E402

WAYS = ("heun-10", "ab2-5:g0.15-0.7", "heun-3")  # the old default, today's, a cheaper control
K = 3


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make the covariances singular
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def manifold_share(centres: np.ndarray, queries: np.ndarray) -> float:
    """Share of queries inside the union of balls around centres reaching their K-th
    neighbour (Kynkäänniemi et al., 2019), each query checked against the balls of its K + 1
    nearest centres only: a farther centre's larger ball is not looked at, which can only
    lower the share, the same way for every way scored."""
    radii = NearestNeighbors(n_neighbors=K + 1).fit(centres).kneighbors(centres)[0][:, -1]
    distance, index = NearestNeighbors(n_neighbors=K + 1).fit(centres).kneighbors(queries)
    return float((distance <= radii[index]).any(1).mean())


class IndependentJudge:
    def __init__(self, run: TrainedModel):
        test = run.split("test")
        pixels = test.images.reshape(len(test.images), -1).numpy().astype(np.float32) / 255
        labels = test.labels.numpy()
        half = len(pixels) // 2
        self.mlp = MLPClassifier((256, 128), max_iter=60, early_stopping=True, random_state=0)
        self.mlp.fit(pixels[:half], labels[:half])
        self.accuracy = float(self.mlp.score(pixels[half:], labels[half:]))
        self.pca = PCA(50, random_state=0).fit(pixels[:half])
        self.reference = pixels[half:]
        self.real = self.features(self.reference)
        self.real_pca = self.pca.transform(self.reference)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """The MLP's last hidden layer (ReLU of 128)."""
        h = pixels
        for weights, bias in zip(self.mlp.coefs_[:-1], self.mlp.intercepts_[:-1]):
            h = np.maximum(h @ weights + bias, 0)
        return h

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        pixels = images.reshape(len(images), -1).numpy().astype(np.float32)
        fake = self.features(pixels)
        return {
            "fd_mlp": frechet(fake, self.real),
            "fd_pca": frechet(self.pca.transform(pixels), self.real_pca),
            "precision": manifold_share(self.real, fake),
            "recall": manifold_share(fake, self.real),
            "label_accuracy": float((self.mlp.predict(pixels) == labels.numpy()).mean()),
        }


def draw(run: TrainedModel, labels: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.cat(
        [
            run.sample(len(part), seed=1000 * seed + i, sampler="prior", label=part)
            for i, part in enumerate(labels.split(1000))
        ]
    )


def main() -> None:
    args = ways_arguments(__doc__.split("\n\n")[0], WAYS, "independent-judge-cpu.json")
    torch.manual_seed(0)
    rows: list[dict] = []
    plain = code_denoiser.CodeDenoiser.sample
    for run_dir in args.runs:
        run = load(run_dir)
        own, other = Judge(run), IndependentJudge(run)
        classes = int(run.model.prior_classes)
        labels = torch.arange(args.n) % classes
        print(f"{run_dir}: the MLP judge's accuracy {other.accuracy:.4f}", flush=True)
        try:
            for way in args.ways:
                prior = CountedPrior(way)
                code_denoiser.CodeDenoiser.sample = (  # type: ignore[method-assign]
                    lambda net, *a, _prior=prior, **k: _prior(net, *a, **k)
                )
                for seed in (0, 1) if way == args.ways[0] else (0,):
                    images = draw(run, labels, seed)
                    row = {
                        "dataset": run.config.dataset,
                        "way": way,
                        "seed": seed,
                        "passes": prior.passes,
                        "fd_aegen": own.score(images)["fd_aegen"],
                        **other.score(images, labels),
                        "mlp_accuracy": other.accuracy,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            code_denoiser.CodeDenoiser.sample = plain  # type: ignore[method-assign]
        args.json.write_text(json.dumps({"hardware": hardware(), "n": args.n, "rows": rows}))
    print("| data | way | seed | passes | FD-aegen | FD (MLP) | FD (PCA) | P | R | label acc. |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['way']} | {r['seed']} | {r['passes']} | {r['fd_aegen']:.2f} "
            f"| {r['fd_mlp']:.3f} | {r['fd_pca']:.3f} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['label_accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()
