"""Torch dataset over ``DetectionSample`` lists and its collate function.

``DetectionDataset[i]`` -> ``(image, target)``: ``image`` float32 CHW in [0, 1], ``target`` =
``{"boxes": float32 (N, 4) xyxy pixels of the returned image, "labels": int64 (N,)}``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from .samples import DetectionSample, DetectionSet
from .transforms import to_tv


def read_rgb(path) -> torch.Tensor:
    """uint8 (3, H, W) tensor of the pixels as stored (EXIF orientation is not applied, like the loaders).
    PIL, not torchvision.io, whose decoders are deprecated since torchvision 0.29."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot read image: {exc}", where=str(path)) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class DetectionDataset(Dataset):
    def __init__(self, samples: Union[DetectionSet, Sequence[DetectionSample]], transforms: Optional[Callable] = None):
        self.samples = list(samples.samples if isinstance(samples, DetectionSet) else samples)
        self.class_names = samples.class_names if isinstance(samples, DetectionSet) else None
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        pixels = read_rgb(sample.image_path)
        if tuple(pixels.shape[-2:]) != (sample.height, sample.width):
            raise UserError(f"image is {pixels.shape[-1]}x{pixels.shape[-2]} but was {sample.width}x{sample.height} "
                            "when the labels were loaded", where=str(sample.image_path))
        image, target = to_tv(pixels, sample.boxes, sample.labels)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        return image.as_subclass(torch.Tensor), {
            "boxes": target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
            "labels": target["labels"].as_subclass(torch.Tensor).long().reshape(-1),
        }


def detection_collate(batch):
    """(images, targets): images stacked to (B, 3, H, W) when all share a size (any fixed-size resize
    policy), else a list of (3, H, W) tensors (torchvision detection models take either); targets a list."""
    images, targets = zip(*batch)
    if len({tuple(im.shape) for im in images}) == 1:
        return torch.stack(images), list(targets)
    return list(images), list(targets)
