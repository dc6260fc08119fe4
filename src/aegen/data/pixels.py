"""Pixel ranges: the uint8 images aegen keeps in memory, the float range each model trains in
([0, 1] or [-1, 1]), and [0, 1] for pictures and judges."""

from __future__ import annotations

import torch


def to_model_range(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8 images [B, H, W] or [B, C, H, W] -> float [B, C, H, W] in the model's value range."""
    low, high = value_range
    x = images.unsqueeze(1).float() if images.dim() == 3 else images.float()
    return x.mul_((high - low) / 255.0).add_(low)


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, H, W] or [N, C, H, W] -> float [N, C, H, W] in [0, 1] (pictures, judges)."""
    return to_model_range(images, (0.0, 1.0))


def to_unit_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Model-range images back to [0, 1] for pictures and metrics."""
    low, high = value_range
    return ((x - low) / (high - low)).clamp_(0.0, 1.0)
