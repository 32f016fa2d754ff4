"""LoRA runs merged in adapter space through peft's ``add_weighted_adapter``, within its limits.

peft's ``linear``, ``ties`` and ``dare_*`` combine the A and B factors *separately* and need equal
ranks: ``(Σ w_i B_i)(Σ w_i A_i)`` is not ``Σ w_i B_i A_i``.  ``cat`` stacks the factors (rank = Σ r_i)
and is the exact ΔW sum, so averages and task arithmetic go through ``cat``; ``ties`` and ``dare``
use peft's factor-wise versions, refused when ranks differ.  DoRA's magnitude vectors are not
combined reliably by peft, so DoRA runs (and LoRA stacks with trained embedding rows or extra
modules) are merged as explicit ΔW sums on merged weights instead (``run.py``, ``--lora delta``).
"""
from __future__ import annotations

from ..errors import UserError

COMBINATION = {"average": "cat", "task_arithmetic": "cat", "ties": "ties", "dare": "dare_linear"}


def lora_spec(cfg):
    """(name, spec) of a run's one LoRA adapter, or None when its stack is anything else."""
    specs = list(cfg.adapters.items())
    if len(specs) == 1 and specs[0][1].method == "lora":
        return specs[0]
    return None


def peft_mergeable(cfg) -> bool:
    """A single plain LoRA adapter (no DoRA, trained token rows or extra modules): peft can combine it."""
    found = lora_spec(cfg)
    if found is None:
        return False
    options = found[1].options
    return not (options.use_dora or options.trainable_token_indices or options.extra_trainable or getattr(options, "bias", "none") != "none")


def explain_refusal(cfg, where: str) -> str:
    found = lora_spec(cfg)
    if found is None:
        return f"{where}: adapters {list(cfg.adapters)} are not one LoRA adapter"
    if found[1].options.use_dora:
        return f"{where}: DoRA (peft's add_weighted_adapter does not combine magnitude vectors reliably)"
    return f"{where}: LoRA with trained token rows, extra modules or biases (not combined by add_weighted_adapter)"


def merge_with_peft(sessions, run_dirs, method: str, weights: list[float], density: float, new_name: str = "merged"):
    """Load every run's LoRA into the first run's peft model and combine them into ``new_name``;
    returns the LoRA options describing the merged adapter."""
    from ..registry import ADAPTERS

    lora = ADAPTERS.get("lora")
    host = sessions[0].model.backbone
    names, ranks = [], []
    for i, session in enumerate(sessions):
        name, spec = lora_spec(session.cfg)
        ranks.append(spec.options.r)
        if i == 0:
            names.append(name)
            continue
        alias = f"run{i}"
        lora.apply(host, spec.options, alias)
        lora.load(host, run_dirs[i] / "model" / "adapters" / name, spec.options, alias)
        names.append(alias)
    combination = COMBINATION[method]
    if combination != "cat" and len(set(ranks)) > 1:
        raise UserError(f"peft's {combination} combines the A and B factors separately and needs equal LoRA ranks, got {ranks}",
                        where="--method", expected="runs of one rank, or --lora delta (explicit ΔW = BA sums)")
    kwargs = {"density": density} if combination != "cat" else {}
    host.model.add_weighted_adapter(names, weights, new_name, combination_type=combination, **kwargs)
    host.model.base_model.set_adapter(new_name)
    for name in names:
        host.model.delete_adapter(name)
    config = host.model.peft_config[new_name]
    first = lora_spec(sessions[0].cfg)[1].options
    options = lora.parse_options({"r": config.r, "alpha": config.lora_alpha, "dropout": 0.0,
                                  "target_modules": sorted(config.target_modules) if not isinstance(config.target_modules, str) else config.target_modules,
                                  "bias": first.bias})
    return options, combination
