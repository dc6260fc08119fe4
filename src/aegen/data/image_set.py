"""A data set in memory: one uint8 tensor of images with their labels and class names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The fewest images a run trains on: with one, the end of the run cannot fit a Gaussian to the
# codes; and one more holds the validation split.
LEAST_TRAINING_IMAGES = 2


@dataclass(frozen=True)
class ImageSet:
    """Images as one uint8 tensor, [N, H, W] (grayscale) or [N, C, H, W], with int64 labels [N].

    An unlabelled set (a flat folder, an array without labels) has no classes and labels -1.
    `digest` fingerprints the pixels and labels of a user's own data, so that a run can tell
    whether its folder changed since it trained.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    digest: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        shape = tuple(self.images.shape[1:])
        return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]

    @property
    def labelled(self) -> bool:
        return len(self.classes) > 0
