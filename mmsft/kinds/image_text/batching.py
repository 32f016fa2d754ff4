"""Batches of captions and images for the image + text kinds.

Images are decoded and transformed once per run (a COCO image serves five captions) and kept as
tensors; captions are tokenized per batch.  A batch carries ``input_ids`` / ``attention_mask`` for
the text backbone, ``pixel_values`` for the image backbone or tower, and ``pair_ids`` (retrieval:
each row's image id) or ``labels`` (multi-label: a multi-hot row) for the heads.
"""
from __future__ import annotations

import torch

from .data import ImageRow, image_transform


class ImageStore:
    """Image id -> transformed (3, S, S) tensor, computed on first use."""

    def __init__(self, size: int):
        self.transform, self.tensors = image_transform(size), {}

    def get(self, row: ImageRow) -> torch.Tensor:
        if row.image_id not in self.tensors:
            from ...vision.dataset import read_rgb

            self.tensors[row.image_id] = self.transform(read_rgb(row.path))
        return self.tensors[row.image_id]


class Items(torch.utils.data.Dataset):
    """A list of dict items (the runner and evaluation index them)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class Collate:
    """Items {"text"?, "image"?, "pair_id"?, "labels"?} -> model batch."""

    def __init__(self, tokenizer, max_length: int, images: ImageStore, num_labels: int = 0):
        self.tokenizer, self.max_length, self.images, self.num_labels = tokenizer, max_length, images, num_labels

    def __call__(self, items: list[dict]) -> dict:
        batch = {}
        if "text" in items[0]:
            enc = self.tokenizer([it["text"] for it in items], truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            batch.update({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        if "image" in items[0]:
            batch["pixel_values"] = torch.stack([self.images.get(it["image"]) for it in items])
        if "pair_id" in items[0]:
            batch["pair_ids"] = torch.tensor([it["pair_id"] for it in items])
        if "labels" in items[0]:
            hot = torch.zeros(len(items), self.num_labels)
            for row, it in enumerate(items):
                hot[row, it["labels"]] = 1.0
            batch["labels"] = hot
        return batch


def lengths(items: list[dict], tokenizer) -> list[int]:
    """Token lengths for length-grouped batches (1 for image-only items)."""
    if not items or "text" not in items[0] or tokenizer is None:
        return [1] * len(items)
    return [len(ids) for ids in tokenizer([it["text"] for it in items])["input_ids"]]
