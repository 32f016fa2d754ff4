"""Merging in weight space, on state dicts of one architecture (tensor name -> tensor).

* ``average``: the uniform (or weighted) model soup (Wortsman et al. 2022);
* ``task_arithmetic``: θ = θ_base + λ Σ w_i τ_i with task vectors τ_i = θ_i − θ_base (Ilharco et al. 2023);
* ``ties``: trim each τ_i to its largest-magnitude share ``density`` (per tensor), elect a sign per
  entry from the summed (weighted) values, and average only the entries agreeing with it (Yadav et
  al. 2023);
* ``dare``: drop each τ_i entry with probability 1 − density and rescale the rest by 1/density, then
  add as in task arithmetic (Yu et al. 2024);
* ``toward_base``: (1 − λ) θ + λ θ_base, moving a merge back toward the pretrained weights (WiSE-FT).

Only floating-point tensors are merged; integer buffers (position ids) are taken from the first state.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

State = dict[str, torch.Tensor]


def _merged(states: Sequence[State], combine) -> State:
    first = states[0]
    return {k: (combine(k, [s[k] for s in states]) if first[k].is_floating_point() else first[k].clone()) for k in first}


def _weights(weights: Optional[Sequence[float]], n: int) -> list[float]:
    return [1.0] * n if weights is None else [float(w) for w in weights]


def average(states: Sequence[State], weights: Optional[Sequence[float]] = None) -> State:
    w = _weights(weights, len(states))
    total = sum(w)
    return _merged(states, lambda _k, ts: sum(wi * t.float() for wi, t in zip(w, ts)).div(total).to(ts[0].dtype))


def task_vectors(states: Sequence[State], base: State) -> list[State]:
    return [{k: s[k].float() - base[k].float() for k in base if base[k].is_floating_point()} for s in states]


def _apply(base: State, vector: State, scale: float) -> State:
    return {k: (base[k].float() + scale * vector[k]).to(base[k].dtype) if k in vector else base[k].clone() for k in base}


def task_arithmetic(base: State, vectors: Sequence[State], weights: Optional[Sequence[float]] = None, scale: float = 1.0) -> State:
    w = _weights(weights, len(vectors))
    summed = {k: sum(wi * v[k] for wi, v in zip(w, vectors)) for k in vectors[0]}
    return _apply(base, summed, scale)


def trim(t: torch.Tensor, density: float) -> torch.Tensor:
    """``t`` with all but its ``density`` share of largest-magnitude entries set to zero."""
    if density >= 1:
        return t
    k = int(round(density * t.numel()))
    if k <= 0:
        return torch.zeros_like(t)
    threshold = t.abs().flatten().kthvalue(t.numel() - k + 1).values
    return torch.where(t.abs() >= threshold, t, torch.zeros_like(t))


def ties_tensor(ts: Sequence[torch.Tensor], weights: Sequence[float], density: float) -> torch.Tensor:
    """TIES on one tensor: trim, elect sign from the weighted sum, disjoint weighted mean."""
    trimmed = torch.stack([trim(t, density) * w for t, w in zip(ts, weights)])
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    mass = torch.tensor([abs(w) for w in weights], dtype=trimmed.dtype).view(-1, *[1] * (trimmed.ndim - 1))
    denom = (agree * mass).sum(0)
    return torch.where(denom > 0, (trimmed * agree).sum(0) / denom.clamp(min=1e-12), torch.zeros_like(denom))


def ties(base: State, vectors: Sequence[State], weights: Optional[Sequence[float]] = None, density: float = 0.2,
         scale: float = 1.0) -> State:
    w = _weights(weights, len(vectors))
    merged = {k: ties_tensor([v[k] for v in vectors], w, density) for k in vectors[0]}
    return _apply(base, merged, scale)


def dare(base: State, vectors: Sequence[State], weights: Optional[Sequence[float]] = None, density: float = 0.2,
         scale: float = 1.0, seed: int = 0) -> State:
    generator = torch.Generator().manual_seed(seed)
    dropped = []
    for v in vectors:
        dropped.append({k: t * (torch.rand(t.shape, generator=generator) < density).to(t.dtype) / density for k, t in v.items()})
    return task_arithmetic(base, dropped, weights, scale)


def toward_base(state: State, base: State, lam: float) -> State:
    if lam == 0:
        return state
    return {k: ((1 - lam) * state[k].float() + lam * base[k].float()).to(state[k].dtype) if state[k].is_floating_point() else state[k]
            for k in state}
