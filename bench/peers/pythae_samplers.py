"""pythae's learned latent samplers (MAF, two-stage VAE) on a trained aegen model (a bench/ peer).

Run inside the separate venv that bench/setup_peers.sh makes; bench/learned_samplers.py calls it:
    bench/.venv-pythae/bin/python bench/peers/pythae_samplers.py RUN/model.safetensors \
        --images train.npy --out-dir DIR [--codes codes.npy] [--n-samples 10000]

It rebuilds aegen's `ae` (784-128-64-12-3, Tanh, data in [-1, 1]) or `vae` (784-400-20, sigmoid)
as a pythae AE / VAE from the weights file alone (layer widths from the tensor shapes; no aegen
import), so that both libraries fit their samplers to the same trained networks. pythae takes and
gives images in [0, 1]; the wrappers map them to and from the model's own range. Each sampler is
fitted with pythae's defaults (--epochs overrides them, for smoke tests), timed, then draws
--n-samples images (seeded), saved as float32 [N, 1, 28, 28] in [0, 1]. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

# The value range each aegen model works in (FullyConnectedAE / BernoulliVAE.value_range).
VALUE_RANGES = {"ae": (-1.0, 1.0), "vae": (0.0, 1.0)}


def read_weights(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """The model name aegen stamped in the file's metadata, and its tensors."""
    with safe_open(str(path), "pt") as handle:
        name = (handle.metadata() or {}).get("model", "")
        return name, {key: handle.get_tensor(key) for key in handle.keys()}


def linear_stack(weights: dict[str, torch.Tensor], prefix: str, final: nn.Module) -> nn.Sequential:
    """aegen's Sequential of Linear layers (ReLU between them, `final` after the last) rebuilt
    at the same indices, so that its state-dict keys are the weights file's own."""
    indices = sorted(
        int(k.split(".")[1]) for k in weights if k.startswith(prefix) and "weight" in k
    )
    layers: list[nn.Module] = []
    for position, index in enumerate(indices):
        n_out, n_in = weights[f"{prefix}{index}.weight"].shape
        if len(layers) != index:
            raise SystemExit(f"unexpected layer layout under {prefix!r}: {indices}")
        layers.append(nn.Linear(n_in, n_out))
        layers.append(nn.ReLU() if position < len(indices) - 1 else final)
    return nn.Sequential(*layers)


def build(name: str, weights: dict[str, torch.Tensor], value_range: tuple[float, float]) -> Any:
    """A pythae AE (for `ae`) or VAE (for `vae`) holding aegen's trained weights."""
    from pythae.models import AE, VAE, AEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    low, high = value_range

    class Encoder(BaseEncoder):
        """[0, 1] images -> the model's range -> code (and log-variance for the VAE)."""

        def __init__(self, body: nn.Module, heads: nn.ModuleDict | None = None):
            super().__init__()
            self.body, self.heads = body, heads

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.body((x.reshape(len(x), -1) * (high - low)) + low)
            if self.heads is None:
                return ModelOutput(embedding=h)
            mu, logvar = self.heads["fc_mu"](h), self.heads["fc_logvar"](h)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        """Code -> the model's range -> [0, 1] images [N, 1, 28, 28]."""

        def __init__(self, body: nn.Module):
            super().__init__()
            self.body = body

        def forward(self, z: torch.Tensor) -> ModelOutput:
            x = (self.body(z) - low) / (high - low)
            return ModelOutput(reconstruction=x.reshape(len(z), 1, 28, 28))

    if name == "ae":
        encoder = Encoder(linear_stack(weights, "encoder.", nn.Identity()))
        decoder = Decoder(linear_stack(weights, "decoder.", nn.Tanh()))
        renamed = {f"{k.split('.')[0]}.body.{k.split('.', 1)[1]}": v for k, v in weights.items()}
        latent = weights["decoder.0.weight"].shape[1]
        model = AE(AEConfig(input_dim=(1, 28, 28), latent_dim=latent), encoder, decoder)
    elif name == "vae":
        (hidden, pixels), latent = weights["fc1.weight"].shape, weights["fc_mu.weight"].shape[0]
        heads = nn.ModuleDict(
            {"fc_mu": nn.Linear(hidden, latent), "fc_logvar": nn.Linear(hidden, latent)}
        )
        encoder = Encoder(nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU()), heads)
        body = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels), nn.Sigmoid()
        )
        decoder = Decoder(body)
        where = {
            "fc1": "encoder.body.0",
            "fc_mu": "encoder.heads.fc_mu",
            "fc_logvar": "encoder.heads.fc_logvar",
            "fc3": "decoder.body.0",
            "fc4": "decoder.body.2",
        }
        renamed = {f"{where[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in weights.items()}
        config = VAEConfig(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce")
        model = VAE(config, encoder, decoder)
    else:
        raise SystemExit(
            f"only aegen's fully-connected `ae` and `vae` are rebuilt here, not {name!r}"
        )
    model.load_state_dict(renamed, strict=True)  # every tensor placed, none left over
    return model.eval()


def check_codes(model: Any, images: torch.Tensor, codes_path: Path) -> float:
    """Largest difference between pythae's codes and aegen's for the first images (the same
    networks must give the same codes: the posterior mean for the VAE)."""
    expected = torch.from_numpy(np.load(codes_path)).float()
    with torch.no_grad():
        got = model.encoder(images[: len(expected)]).embedding
    error = float((got - expected).abs().max())
    if error > 1e-4:
        raise SystemExit(f"pythae's encoder disagrees with aegen's codes by {error:.2e}")
    return error


def make_sampler(kind: str, model: Any) -> Any:
    """pythae's sampler with its default config."""
    if kind == "maf":
        from pythae.samplers import MAFSampler, MAFSamplerConfig

        return MAFSampler(model, MAFSamplerConfig())
    from pythae.samplers import TwoStageVAESampler, TwoStageVAESamplerConfig

    return TwoStageVAESampler(model, TwoStageVAESamplerConfig())


def run_sampler(kind: str, model: Any, images: torch.Tensor, args: argparse.Namespace) -> dict:
    """Fit one sampler (pythae's default training unless --epochs), time it, draw and save."""
    from pythae.trainers import BaseTrainerConfig

    try:
        torch.manual_seed(args.seed)
        started = time.perf_counter()
        sampler = make_sampler(kind, model)
    except AssertionError as exc:  # TwoStageVAESampler asserts a VAE-based model
        reason = f"pythae's {kind} sampler takes VAE-based models only, not {type(model).__name__}"
        return {"skipped": reason, "pythae_message": " ".join(str(exc).split())}
    with tempfile.TemporaryDirectory() as out:
        overrides = {"num_epochs": args.epochs} if args.epochs else {}
        config = BaseTrainerConfig(output_dir=out, no_cuda=True, **overrides)
        sampler.fit(images, training_config=config)
        fit_seconds = time.perf_counter() - started
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    with torch.no_grad():
        samples = sampler.sample(num_samples=args.n_samples)
    sample_seconds = time.perf_counter() - started
    path = args.out_dir / f"pythae-{kind}.npy"
    np.save(path, samples.clamp(0, 1).float().cpu().numpy())
    return {
        "fit_seconds": fit_seconds,
        "sample_seconds": sample_seconds,
        "path": str(path),
        "epochs": config.num_epochs,
        "trainer": {
            "batch_size": config.per_device_train_batch_size,
            "lr": config.learning_rate,
            "optimizer": config.optimizer_cls,
        },
        "sampler_config": sampler.sampler_config.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="an aegen run's model.safetensors")
    parser.add_argument("--images", type=Path, required=True, help="uint8 [N, 1, 28, 28] .npy")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the samples go")
    parser.add_argument("--codes", type=Path, help="aegen's codes of the first images, to check")
    parser.add_argument("--model", choices=sorted(VALUE_RANGES), help="default: from the file")
    parser.add_argument("--samplers", default="maf,two-stage", help="comma-separated")
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, help="override pythae's default (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    stamped, weights = read_weights(args.weights)
    name = args.model or stamped
    if name not in VALUE_RANGES:
        raise SystemExit(f"{args.weights} holds a {stamped!r} model; pass --model ae or vae")
    model = build(name, weights, VALUE_RANGES[name])
    images = torch.from_numpy(np.load(args.images)).float().div_(255).reshape(-1, 1, 28, 28)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "model": name,
        "pythae": version("pythae"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_images": len(images),
    }
    if args.codes:
        result["code_max_error"] = check_codes(model, images, args.codes)
    for kind in args.samplers.split(","):
        if kind not in ("maf", "two-stage"):
            raise SystemExit(f"unknown sampler {kind!r}: choose maf and/or two-stage")
        result[kind] = run_sampler(kind, model, images, args)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # pythae's samplers pick CUDA when seen
    main()
