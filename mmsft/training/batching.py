"""Evaluation batching (length-sorted, no shuffling) and the frozen-backbone feature cache."""
from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from .data import Prepared


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
    """Cached pooled features (one tensor per head) with the batch keys the heads' losses need."""

    def __init__(self, pooled: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]):
        self.pooled, self.targets = pooled, targets

    def __len__(self) -> int:
        return len(next(iter(self.pooled.values())))

    def __getitem__(self, i: int) -> dict:
        return {"pooled": {k: v[i] for k, v in self.pooled.items()}, **{k: v[i] for k, v in self.targets.items()}}


def stack_collate(items: list[dict]) -> dict:
    """Stack tensors key by key (nested dicts too: cached features are one tensor per head)."""
    first = items[0]
    return {k: stack_collate([it[k] for it in items]) if isinstance(first[k], dict) else torch.stack([it[k] for it in items]) for k in first}


@torch.no_grad()
def cache_features(model, prepared: Prepared, batch_size: int, device) -> Prepared:
    """Encode every split once with the frozen backbone; training then only runs the heads.

    Exact because a frozen backbone is kept in eval mode (no dropout) during training too."""
    model.eval()
    targets = sorted({head.target for head in model.heads.values()})
    splits = {}
    for split in prepared.splits:
        n = len(prepared.splits[split])
        pooled: dict[str, list] = {}
        labels: dict[str, list] = {key: [None] * n for key in targets}
        total = (n + batch_size - 1) // batch_size
        for batch, idx in tqdm(iterate_eval(prepared, split, batch_size, device), total=total, desc=f"encode {split}", mininterval=5):
            for head, out in model.encode(batch).items():
                rows = pooled.setdefault(head, [None] * n)
                out = out.float().cpu()
                for j, i in enumerate(idx):
                    rows[i] = out[j]
            for key in targets:
                for j, i in enumerate(idx):
                    labels[key][i] = batch[key][j].cpu()
        splits[split] = FeatureDataset({h: torch.stack(v) for h, v in pooled.items()}, {k: torch.stack(v) for k, v in labels.items()})
    # keep token lengths so batches are composed exactly as in uncached training
    return Prepared(splits, stack_collate, prepared.lengths, prepared.groups, extra=prepared.extra)
