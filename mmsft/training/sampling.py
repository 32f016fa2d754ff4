"""Batching without packing: length-grouped, seeded per epoch, resumable mid-epoch.

``train.sampler`` picks the epoch's sample order: ``length`` (every sample once, shuffled),
``class_balanced`` or ``cluster_balanced`` (as many draws as samples, spread evenly over the groups
(labels, or embedding clusters the kind computes), cycling through each group's members in a
reshuffled order so small groups repeat and large ones are subsampled).  Either way the order is a
pure function of (seed, epoch), so mid-epoch resume stays exact.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterator, Optional, Sequence

SAMPLER_GROUPS = {"class_balanced": "class", "cluster_balanced": "cluster"}  # sampler -> Prepared.groups key


def balanced_order(groups: Sequence[int], rng: random.Random) -> list[int]:
    """len(groups) indices with (near) equal counts per group; each group's members are used in a
    shuffled cycle (reshuffled at every wrap), then the whole order is shuffled."""
    members = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    keys = sorted(members)
    rng.shuffle(keys)
    base, extra = divmod(len(groups), len(keys))
    order = []
    for rank, key in enumerate(keys):
        pool, quota, taken = members[key], base + (rank < extra), []
        while len(taken) < quota:
            cycle = pool[:]
            rng.shuffle(cycle)
            taken.extend(cycle[: quota - len(taken)])
        order.extend(taken)
    rng.shuffle(order)
    return order


def sampler_groups(spec, prepared) -> Optional[list[int]]:
    """The train groups ``spec.sampler`` balances over (None for ``length``); a clear error when the
    task kind provides none."""
    key = SAMPLER_GROUPS.get(getattr(spec, "sampler", "length"))
    if key is None:
        return None
    groups = getattr(prepared, "groups", {}).get(key)
    if groups is None:
        from ..errors import UserError

        raise UserError(f"train.sampler '{spec.sampler}' needs '{key}' groups, which this task kind does not provide",
                        where="train.sampler", expected="length, or a kind that fills Prepared.groups")
    return list(groups)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True,
                  groups: Optional[Sequence[int]] = None) -> list[list[int]]:
    """Shuffle (or draw a balanced order over ``groups``), then (optionally) sort inside mega-batches
    of 50 batches by length so a batch holds samples of similar length (little padding), and shuffle
    the batch order.  Deterministic in (seed, epoch), which makes mid-epoch resume exact."""
    rng = random.Random(seed * 100_003 + epoch)
    if groups is None:
        order = list(range(len(lengths)))
        rng.shuffle(order)
    else:
        order = balanced_order(groups, rng)
    if group_by_length:
        mega = batch_size * 50
        order = [i for s in range(0, len(order), mega) for i in sorted(order[s : s + mega], key=lambda j: -lengths[j])]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class ResumableBatchSampler:
    """A batch sampler over ``epoch_batches`` that can skip the batches already consumed."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True,
                 num_replicas: int = 1, rank: int = 0, groups: Optional[Sequence[int]] = None):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_by_length
        self.groups = groups  # balanced sampling over these group ids (see ``balanced_order``)
        if groups is not None and len(groups) != len(lengths):
            raise ValueError(f"{len(groups)} group ids for {len(lengths)} samples")
        self.num_replicas, self.rank = num_replicas, rank  # multi-process: each rank takes every n-th batch
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.skip :]

    def _batches(self) -> list[list[int]]:
        batches = epoch_batches(self.lengths, self.batch_size, self.seed, self.epoch, self.group, self.groups)
        if self.num_replicas > 1:  # equal count per rank so collective ops stay in step
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[:usable][self.rank :: self.num_replicas]
        return batches

    def __len__(self) -> int:
        full = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return full // self.num_replicas - self.skip if self.num_replicas > 1 else full - self.skip


def group_batches(lengths: Sequence[int], groups: Sequence[int], batch_size: int, seed: int, epoch: int,
                  mode: str = "proportional", temperature: float = 2.0, active: Optional[set] = None,
                  group_by_length: bool = True, shares: Optional[dict] = None) -> list[list[int]]:
    """Batches that each hold one group only (multi-task: one task per batch), in a schedule:

    * ``proportional``: every group's batches once, shuffled together (groups appear as often as
      their sizes say);
    * ``temperature``: the same number of batches, each drawn from group g with probability
      proportional to n_g ** (1 / T) (T = 1 is proportional, large T tends to uniform), cycling
      through a group's shuffled batches (reshuffled at every wrap);
    * ``round_robin``: groups in turn, each cycling through its batches.

    ``active`` restricts the epoch to some groups (tasks that stopped early).  ``shares`` (proportional
    only) gives a group ``round(share * its batches)`` batches per epoch, taken in turn from an endless
    stream of its shuffled passes, so over E epochs it sees ``share * E`` passes of its data: a task that
    needs 3 epochs alone gets 3 passes spread over a 6-epoch run and, like alone, reaches the end of the
    learning-rate schedule.  Deterministic in (seed, epoch), so mid-epoch resume stays exact."""
    rng = random.Random(seed * 100_003 + epoch)
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        if active is None or group in active:
            members[group].append(index)
    per_group = {}
    for group in sorted(members):
        sub = [lengths[i] for i in members[group]]
        pass_seed = rng.randrange(2**31)  # drawn for every group, so a share leaves the other groups' batches alone
        if shares and group in shares:
            per_group[group] = [[members[group][i] for i in b] for b in shared_stream(sub, batch_size, seed, group, epoch, shares[group], group_by_length)]
        else:
            per_group[group] = [[members[group][i] for i in b] for b in epoch_batches(sub, batch_size, pass_seed, 0, group_by_length)]
    total = sum(len(b) for b in per_group.values())
    if mode == "proportional":
        out = [b for group in sorted(per_group) for b in per_group[group]]
        rng.shuffle(out)
        return out
    keys = sorted(per_group)
    if mode == "temperature":
        weights = [len(members[g]) ** (1 / temperature) for g in keys]
        schedule = rng.choices(keys, weights=weights, k=total)
    elif mode == "round_robin":
        schedule = [keys[i % len(keys)] for i in range(total)]
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    cursor = {g: 0 for g in keys}
    out = []
    for g in schedule:
        if cursor[g] == len(per_group[g]):  # wrap: a new shuffled cycle of this group's batches
            rng.shuffle(per_group[g])
            cursor[g] = 0
        out.append(per_group[g][cursor[g]])
        cursor[g] += 1
    return out


def shared_stream(lengths: Sequence[int], batch_size: int, seed: int, group: int, epoch: int, share: float,
                  group_by_length: bool = True) -> list[list[int]]:
    """Epoch ``epoch``'s window of ``round(share * B)`` batches (at least 1) from a stream of passes over
    one group (B batches each, pass p shuffled by (seed, group, p)): consecutive epochs continue where
    the last one stopped, so the group's data is covered evenly."""
    per_pass = (len(lengths) + batch_size - 1) // batch_size
    take = max(1, round(share * per_pass))
    passes: dict[int, list[list[int]]] = {}
    out = []
    for position in range(epoch * take, (epoch + 1) * take):
        number, offset = divmod(position, per_pass)
        if number not in passes:
            passes[number] = epoch_batches(lengths, batch_size, seed * 100_003 + 7_919 * (group + 1), number, group_by_length)
        out.append(passes[number][offset])
    return out


class GroupBatchSampler(ResumableBatchSampler):
    """``group_batches`` as a resumable batch sampler (``active``: the groups still sampled)."""

    def __init__(self, lengths: Sequence[int], groups: Sequence[int], batch_size: int, seed: int, mode: str = "proportional",
                 temperature: float = 2.0, group_by_length: bool = True, num_replicas: int = 1, rank: int = 0,
                 shares: Optional[dict] = None):
        super().__init__(lengths, batch_size, seed, group_by_length, num_replicas, rank)
        self.shares = shares  # group -> passes per epoch (``group_batches``)
        if len(groups) != len(lengths):
            raise ValueError(f"{len(groups)} group ids for {len(lengths)} samples")
        self.task_groups, self.mode, self.temperature = list(groups), mode, temperature
        self.active: Optional[set] = None

    def _all(self) -> list[list[int]]:
        batches = group_batches(self.lengths, self.task_groups, self.batch_size, self.seed, self.epoch, self.mode,
                                self.temperature, self.active, self.group, self.shares)
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[:usable][self.rank :: self.num_replicas]
        return batches

    def _batches(self) -> list[list[int]]:
        return self._all()

    def __len__(self) -> int:
        return len(self._all()) - self.skip
