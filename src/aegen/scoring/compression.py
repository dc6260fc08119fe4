"""Rate and distortion of image codecs: is "an autoencoder a lossy, data-specific compressor"?

The experiment puts an autoencoder, PCA and JPEG on one rate-distortion plot. Rate is bits per
image: for the autoencoder and PCA, the stored code (code size x 32, 16 or 8 bits per number, no
entropy coding, so an upper bound on what a real codec would need); for JPEG, the real file size
with its headers. The fitted models themselves (weights, PCA basis, the quantiser's ranges) are not
counted: like a codec's tables, they are shared once by sender and receiver. Distortion is measured
in [0, 1] pixel units as MSE, PSNR and SSIM on the rebuilt test images.
"""

from __future__ import annotations

import io
import math
from importlib import metadata

import numpy as np
import torch
from PIL import Image

from aegen.data.pixels import unit_images
from aegen.errors import ConfigError

STORAGES = ("float32", "float16", "uint8")
BITS_PER_NUMBER = {"float32": 32, "float16": 16, "uint8": 8}
LEVELS = 256  # an 8-bit quantiser
PSNR_CAP = 100.0  # dB given to an exactly rebuilt image, whose PSNR would be infinite
SSIM_SIGMA = 1.5  # torchmetrics' default: an 11-px Gaussian window (Wang et al., 2004)
SSIM_MIN_SIDE = 6  # the window's reflection padding (5 px) needs at least 6 px on a side
CHUNK = 512  # images per SSIM call: bounds the padded copies it makes


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


SSIM_SOURCE = (
    "torchmetrics.functional.image.structural_similarity_index_measure "
    f"(torchmetrics {_version('torchmetrics')}): data_range=1.0, Gaussian window sigma=1.5 "
    "(11 px), k1=0.01, k2=0.03, reflection-padded SSIM map averaged over every pixel and channel "
    "of an image, then over images; a side under 6 px gets a narrower Gaussian that fits it"
)


def _check_storage(storage: str) -> None:
    if storage not in STORAGES:
        raise ConfigError(f"unknown code storage {storage!r}; choose one of {', '.join(STORAGES)}")


def code_bits(code_size: int, storage: str) -> int:
    """Bits to store one image's code: the rate of an autoencoder or PCA on the plot."""
    _check_storage(storage)
    if code_size < 1:
        raise ConfigError(f"code size must be at least 1, not {code_size}")
    return code_size * BITS_PER_NUMBER[storage]


class UniformQuantiser:
    """8 bits per code dimension, spread evenly over the range the training codes span."""

    def __init__(self) -> None:
        self.low: torch.Tensor | None = None
        self.step: torch.Tensor | None = None

    def fit(self, codes: torch.Tensor) -> UniformQuantiser:
        """Learn each dimension's min and max from training codes [N, D]; returns self."""
        if codes.ndim != 2 or len(codes) == 0:
            raise ConfigError(
                f"quantiser needs training codes [N, D] with N >= 1, not {codes.shape}"
            )
        codes = codes.detach().float()
        low, high = codes.min(0).values, codes.max(0).values
        step = (high - low) / (LEVELS - 1)
        self.low = low
        self.step = torch.where(step > 0, step, torch.ones_like(step))  # constant: all at level 0
        return self

    def _fitted(self, dims: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.low is None or self.step is None:
            raise ConfigError("fit the quantiser on training codes before quantising")
        if dims != len(self.low):
            raise ConfigError(f"quantiser was fitted on {len(self.low)}-number codes, not {dims}")
        return self.low.to(device), self.step.to(device)

    def quantise(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [N, D] -> uint8 levels [N, D]: clamped to the fitted range, rounded to nearest."""
        low, step = self._fitted(codes.shape[-1], codes.device)
        levels = ((codes.detach().float() - low) / step).round().clamp(0, LEVELS - 1)
        return levels.to(torch.uint8)

    def dequantise(self, levels: torch.Tensor) -> torch.Tensor:
        """uint8 levels [N, D] -> float32 codes [N, D], within half a step of those quantised."""
        low, step = self._fitted(levels.shape[-1], levels.device)
        return low + levels.float() * step


def stored(codes: torch.Tensor, storage: str, quantiser: UniformQuantiser | None) -> torch.Tensor:
    """Codes as a decoder would read them back from that storage (float32), rounding included."""
    _check_storage(storage)
    if storage == "float32":
        return codes.to(torch.float32)
    if storage == "float16":
        return codes.to(torch.float16).to(torch.float32)
    if quantiser is None:
        raise ConfigError("uint8 code storage needs a quantiser fitted on the training codes")
    return quantiser.dequantise(quantiser.quantise(codes))


def _ssim_sigma(side: int) -> float:
    # Narrowest change that keeps torchmetrics working: its Gaussian reaches int(3.5 sigma + 0.5)
    # px each way, which must stay under the side for the reflection padding.
    return SSIM_SIGMA if side >= SSIM_MIN_SIDE else max((side - 1) / 3.5, 0.1)


def ssim_available() -> bool:
    """Whether SSIM can be measured: torchmetrics (the `compression` extra) is installed."""
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure  # noqa: F401
    except ImportError:
        return False
    return True


def _ssim_per_image(original: torch.Tensor, rebuilt: torch.Tensor) -> torch.Tensor:
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure
    except ImportError:
        raise ConfigError("SSIM needs torchmetrics: pip install 'aegen[compression]'") from None
    sigma = (_ssim_sigma(original.shape[-2]), _ssim_sigma(original.shape[-1]))
    scores = [
        structural_similarity_index_measure(r, o, data_range=1.0, sigma=sigma, reduction="none")
        for o, r in zip(original.split(CHUNK), rebuilt.split(CHUNK))
    ]
    return torch.cat([s.reshape(-1) for s in scores]).double()  # type: ignore[union-attr]


def distortion(
    original: torch.Tensor, rebuilt: torch.Tensor, with_ssim: bool = True
) -> dict[str, float]:
    """MSE, PSNR (dB, mean over images) and SSIM of rebuilt vs original, float [N, C, H, W] in
    [0, 1]: the distortion axis, in the units image-compression papers report. with_ssim=False
    leaves SSIM out (it needs torchmetrics, see ssim_available)."""
    if original.shape != rebuilt.shape or original.ndim != 4 or len(original) == 0:
        raise ConfigError(
            "distortion needs two image sets [N, C, H, W] of one shape, not "
            f"{tuple(original.shape)} and {tuple(rebuilt.shape)}"
        )
    if not (original.is_floating_point() and rebuilt.is_floating_point()):
        raise ConfigError("distortion needs float images in [0, 1]; convert uint8 with unit_images")
    per_image = (original.double() - rebuilt.double()).pow(2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1 / per_image)).clamp(max=PSNR_CAP)  # 1/0 = inf -> the cap
    scores = {"mse": per_image.mean().item(), "psnr": psnr.mean().item()}
    if with_ssim:
        scores["ssim"] = _ssim_per_image(original.float(), rebuilt.float()).mean().item()
    return scores


def _flat_unit(images: torch.Tensor) -> np.ndarray:
    return unit_images(images).flatten(1).cpu().numpy().astype(np.float32)


class PCACodec:
    """PCA as a codec: `components` coefficients per image (the code, storable like an
    autoencoder's), fitted on training images as flat [0, 1] vectors."""

    def __init__(self, train: torch.Tensor, components: int, seed: int = 0):
        from sklearn.decomposition import PCA

        self.shape = unit_images(train[:1]).shape[1:]
        most = min(len(train), math.prod(self.shape))
        if not 1 <= components <= most:
            raise ConfigError(f"PCA components must be from 1 to {most} here, not {components}")
        self.pca = PCA(n_components=components, random_state=seed).fit(_flat_unit(train))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> coefficients [N, components] (float32)."""
        if unit_images(images[:1]).shape[1:] != self.shape:
            raise ConfigError("PCA training and test images must have the same channels and size")
        return torch.from_numpy(self.pca.transform(_flat_unit(images))).float()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Coefficients -> images float [N, C, H, W], clipped to [0, 1]."""
        rebuilt = self.pca.inverse_transform(codes.double().numpy()).clip(0.0, 1.0)
        return torch.from_numpy(rebuilt).float().reshape(len(codes), *self.shape)


def pca_round_trip(
    train: torch.Tensor, test: torch.Tensor, components: int, seed: int = 0
) -> torch.Tensor:
    """Test images rebuilt from `components` PCA coefficients fitted on the training images: the
    linear baseline an autoencoder's code must beat. uint8 in, float [N, C, H, W] in [0, 1] out."""
    codec = PCACodec(train, components, seed)
    return codec.decode(codec.encode(test))


def jpeg_round_trip(images: torch.Tensor, quality: int) -> tuple[torch.Tensor, float]:
    """Each image through Pillow's standard JPEG (4:2:0 chroma for colour) at `quality`, in memory.

    Returns the decoded float [N, C, H, W] in [0, 1] and the mean bits per image, 8 x the mean
    encoded size in bytes: the real file size, headers and tables included, as JPEG's rate.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ConfigError(f"JPEG quality must be a whole number from 1 to 95, not {quality!r}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if (
        images.dtype != torch.uint8
        or images.ndim != 4
        or images.shape[1] not in (1, 3)
        or not len(images)
    ):
        raise ConfigError("JPEG needs uint8 images [N, H, W] or [N, C, H, W] with 1 or 3 channels")
    pixels = images.permute(0, 2, 3, 1).cpu().numpy()
    rebuilt, sizes = [], []
    for picture in pixels:
        buffer = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(
            buffer, format="JPEG", quality=quality
        )
        sizes.append(buffer.tell())
        buffer.seek(0)
        rebuilt.append(np.asarray(Image.open(buffer)).reshape(picture.shape))
    decoded = torch.from_numpy(np.stack(rebuilt)).permute(0, 3, 1, 2)
    return decoded.float() / 255, 8 * float(np.mean(sizes))
