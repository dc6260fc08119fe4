"""pythae's VAE with the article's 784-400-20 networks on the same IDX data (a peer for bench/).

Run inside the separate venv that bench/setup_peers.sh makes:
    bench/.venv-pythae/bin/python bench/peers/pythae_vae.py train --epochs 3 --data-root DIR
    bench/.venv-pythae/bin/python bench/peers/pythae_vae.py nll --images 200 --data-root DIR
It reads the Fashion-MNIST IDX files itself (no aegen import) and prints one JSON line;
--device cuda runs it on the GPU.
"""

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def read_images(path: Path) -> np.ndarray:
    content = gzip.decompress(path.read_bytes())
    count = int.from_bytes(content[4:8], "big")
    return np.frombuffer(content, np.uint8, offset=16).reshape(count, 1, 28, 28)


def build_vae():
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.fc1, self.mu, self.logvar = (
                nn.Linear(784, 400),
                nn.Linear(400, 20),
                nn.Linear(400, 20),
            )

        def forward(self, x):
            h = F.relu(self.fc1(x.reshape(len(x), -1)))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, z):
            x = torch.sigmoid(self.fc4(F.relu(self.fc3(z))))
            return ModelOutput(reconstruction=x.reshape(len(z), 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(), decoder=Decoder())


def train(args) -> dict:
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    images = read_images(args.data_root / "FashionMNIST/raw/train-images-idx3-ubyte.gz")
    data = torch.from_numpy(images).float() / 255
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out,
            num_epochs=args.epochs,
            learning_rate=1e-3,
            per_device_train_batch_size=128,
            per_device_eval_batch_size=1000,
            optimizer_cls="Adam",
            no_cuda=args.device != "cuda",
            steps_saving=None,
        )
        started = time.perf_counter()
        TrainingPipeline(training_config=config, model=build_vae())(train_data=data)
        return {"train_seconds": time.perf_counter() - started}


def nll(args) -> dict:
    images = read_images(args.data_root / "FashionMNIST/raw/t10k-images-idx3-ubyte.gz")
    data = (torch.from_numpy(images[: args.images]).float() / 255).to(args.device)
    model = build_vae().eval().to(args.device)
    started = time.perf_counter()
    value = model.get_nll(data, n_samples=args.k, batch_size=100)  # ends in .item(): synchronised
    seconds = time.perf_counter() - started
    return {
        "nll": float(value),
        "images": args.images,
        "k": args.k,
        "seconds": seconds,
        "seconds_per_image": seconds / args.images,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=("train", "nll"))
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    print(json.dumps(train(args) if args.task == "train" else nll(args)))
    sys.stdout.flush()
