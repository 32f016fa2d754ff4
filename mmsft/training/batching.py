"""Evaluation batching (length-sorted, no shuffling) and the frozen-backbone feature cache."""
from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from ..kinds.base import Prepared


def iterate_eval(prepared: Prepared, split: str, batch_size: int, device) -> Iterator[tuple[dict, list[int]]]:
    """Batches of ``split`` sorted by length (less padding); yields (batch on device, indices)."""
    dataset, lengths = prepared.splits[split], prepared.lengths[split]
    order = sorted(range(len(dataset)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = prepared.collate([dataset[i] for i in idx])
        yield to_device(batch, device), idx


def to_device(value, device):
    """Tensors moved to ``device`` inside dicts, lists and tuples (detection targets are a list of dicts)."""
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


class FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.features[i], "labels": self.labels[i]}


def stack_collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@torch.no_grad()
def cache_features(model, prepared: Prepared, batch_size: int, device) -> Prepared:
    """Encode every split once with the frozen backbone; training then only runs the head.

    Exact because a frozen backbone is kept in eval mode (no dropout) during training too."""
    model.eval()
    splits = {}
    for split in prepared.splits:
        feats = [None] * len(prepared.splits[split])
        labels = [None] * len(feats)
        total = (len(feats) + batch_size - 1) // batch_size
        for batch, idx in tqdm(iterate_eval(prepared, split, batch_size, device), total=total, desc=f"encode {split}", mininterval=5):
            out = model.encode(**{k: v for k, v in batch.items() if k != "labels"}).float().cpu()
            for j, i in enumerate(idx):
                feats[i], labels[i] = out[j], batch["labels"][j].cpu()
        splits[split] = FeatureDataset(torch.stack(feats), torch.stack(labels))
    # keep token lengths so batches are composed exactly as in uncached training
    return Prepared(splits, stack_collate, prepared.lengths)
