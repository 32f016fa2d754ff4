"""Batching without packing: length-grouped, seeded per epoch, resumable mid-epoch."""
from __future__ import annotations

import random
from typing import Iterator, Sequence


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True) -> list[list[int]]:
    """Shuffle, then (optionally) sort inside mega-batches of 50 batches by length so a batch holds
    samples of similar length (little padding), and shuffle the batch order.  Deterministic in
    (seed, epoch), which makes mid-epoch resume exact."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        order = [i for s in range(0, len(order), mega) for i in sorted(order[s : s + mega], key=lambda j: -lengths[j])]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class ResumableBatchSampler:
    """A batch sampler over ``epoch_batches`` that can skip the batches already consumed."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True,
                 num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_by_length
        self.num_replicas, self.rank = num_replicas, rank  # multi-process: each rank takes every n-th batch
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.skip :]

    def _batches(self) -> list[list[int]]:
        batches = epoch_batches(self.lengths, self.batch_size, self.seed, self.epoch, self.group)
        if self.num_replicas > 1:  # equal count per rank so collective ops stay in step
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[:usable][self.rank :: self.num_replicas]
        return batches

    def __len__(self) -> int:
        full = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return full // self.num_replicas - self.skip if self.num_replicas > 1 else full - self.skip
