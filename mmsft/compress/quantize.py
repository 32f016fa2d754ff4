"""int8 quantization of the linear layers inside a backbone's blocks, through one of two backends.

* ``torchao`` (``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` / ``Int8StaticActivation
  Int8WeightConfig``): the maintained path, preferred wherever it is not slower;
* ``torch.ao`` (eager ``quantize_dynamic`` modules, per-channel weights, fbgemm / onednn kernels):
  deprecated in torch 2.14 but, on CPUs without a compiled torchao kernel, several times faster.

``backend: auto`` times both on the real model and a real batch (``probe``) and keeps torchao unless it
is slower (by more than 5 %); the choice and the timings are recorded.  Static quantization needs
calibrated activation scales and is torchao's.  Every backend saves the same tensors per layer (int8
weights, per-row scales, bias, activation scale), and rebuilds its own modules from them, so a saved
quantized run reloads bit-exactly without re-quantizing.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import UserError
from .structure import block_linears

MODES = ("int8_dynamic", "int8_static")


@contextlib.contextmanager
def _quiet():
    """torch.ao's deprecation warnings (one per call site) are noise in a CLI run: which backend ran is recorded."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|torch\.ao\.quantization).*")
        yield


class Backend:
    name = ""
    modes: tuple[str, ...] = ()

    def available(self) -> bool:
        raise NotImplementedError

    def is_quantized(self, module: nn.Module) -> bool:
        raise NotImplementedError

    def quantize(self, linear: nn.Linear, mode: str, act_scale: Optional[torch.Tensor]) -> nn.Module:
        raise NotImplementedError

    def export(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """``weight_int8`` (out, in), ``weight_scale`` (out,), optional ``bias`` and ``act_scale``."""
        raise NotImplementedError

    def restore(self, tensors: dict[str, torch.Tensor], mode: str) -> nn.Module:
        raise NotImplementedError


class Flat2d(nn.Module):
    """Runs a linear layer on (N, in) rows: torchao's static int8 scales must match the input's rank,
    and token states are (B, T, in)."""

    def __init__(self, inner: nn.Linear):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


class TorchAO(Backend):
    name, modes = "torchao", MODES

    def available(self) -> bool:
        try:
            import torchao.quantization  # noqa: F401
        except Exception:  # noqa: BLE001 - any import failure means "not usable here"
            return False
        return True

    def _config(self, mode: str, act_scale: Optional[torch.Tensor]):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8StaticActivationInt8WeightConfig
        from torchao.quantization.granularity import PerRow, PerTensor

        if mode == "int8_dynamic":
            return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
        return Int8StaticActivationInt8WeightConfig(act_quant_scale=act_scale.reshape(1, 1).float(), granularity=[PerTensor(), PerRow()],
                                                     set_inductor_config=False)

    def is_quantized(self, module: nn.Module) -> bool:
        inner = module.inner if isinstance(module, Flat2d) else module
        return isinstance(inner, nn.Linear) and type(inner.weight).__name__ == "Int8Tensor"

    def quantize(self, linear, mode, act_scale):
        from torchao.quantization import quantize_

        quantize_(linear, self._config(mode, act_scale))
        return Flat2d(linear) if mode == "int8_static" else linear

    def export(self, module):
        module = module.inner if isinstance(module, Flat2d) else module
        w = module.weight
        out = {"weight_int8": w.qdata.contiguous(), "weight_scale": w.scale.reshape(-1).float().contiguous()}
        if getattr(w, "act_quant_scale", None) is not None:
            out["act_scale"] = w.act_quant_scale.reshape(-1).float().contiguous()
        if module.bias is not None:
            out["bias"] = module.bias.detach().contiguous()
        return out

    def restore(self, tensors, mode):
        from torchao.quantization import Int8Tensor
        from torchao.quantization.granularity import PerRow

        q, scale = tensors["weight_int8"], tensors["weight_scale"]
        act = tensors.get("act_scale")
        probe = self.quantize(nn.Linear(q.shape[1], 1), mode, act if act is not None else torch.ones(1))  # the config's activation settings
        probe = probe.inner if isinstance(probe, Flat2d) else probe
        weight = Int8Tensor.from_hp(q.float() * scale[:, None], PerRow(), scale=scale.reshape(-1, 1),
                                    act_quant_kwargs=probe.weight.act_quant_kwargs,
                                    act_quant_scale=None if act is None else act.reshape(1, 1))
        linear = nn.Linear(q.shape[1], q.shape[0], bias="bias" in tensors)
        linear.weight = nn.Parameter(weight, requires_grad=False)
        if "bias" in tensors:
            linear.bias = nn.Parameter(tensors["bias"].clone(), requires_grad=False)
        return Flat2d(linear) if mode == "int8_static" else linear


class TorchAOLegacy(Backend):
    name, modes = "torch.ao", ("int8_dynamic",)

    def available(self) -> bool:
        try:
            import torch.ao.nn.quantized.dynamic  # noqa: F401
        except Exception:  # noqa: BLE001
            return False
        return bool(torch.backends.quantized.supported_engines)

    def is_quantized(self, module):
        import torch.ao.nn.quantized.dynamic as nnqd

        return isinstance(module, nnqd.Linear)

    def quantize(self, linear, mode, act_scale):
        import torch.ao.nn.quantized.dynamic as nnqd
        from torch.ao.quantization import per_channel_dynamic_qconfig

        with _quiet():
            linear.qconfig = per_channel_dynamic_qconfig
            return nnqd.Linear.from_float(linear)

    def export(self, module):
        w = module.weight()
        out = {"weight_int8": w.int_repr().contiguous(), "weight_scale": w.q_per_channel_scales().float().contiguous()}
        if module.bias() is not None:
            out["bias"] = module.bias().detach().contiguous()
        return out

    def restore(self, tensors, mode):
        import torch.ao.nn.quantized.dynamic as nnqd

        q, scale = tensors["weight_int8"], tensors["weight_scale"]
        with _quiet():
            weight = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros(q.shape[0], dtype=torch.long), 0)
            module = nnqd.Linear(q.shape[1], q.shape[0], dtype=torch.qint8)
            module.set_weight_bias(weight, tensors.get("bias"))
        return module


BACKENDS: dict[str, Backend] = {b.name: b for b in (TorchAO(), TorchAOLegacy())}


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown quantization backend '{name}'", expected="one of: " + ", ".join(BACKENDS))
    return BACKENDS[name]


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


@torch.no_grad()
def calibrate(backbone, run_batches: Callable[[], None]) -> dict[str, torch.Tensor]:
    """Largest |input| seen by each block linear while ``run_batches()`` runs the model (the
    activation scale of static int8 is that / 127, symmetric)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, args):
            value = args[0].detach().abs().max().float()
            seen[name] = torch.maximum(seen[name], value) if name in seen else value
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in block_linears(backbone)]
    try:
        run_batches()
    finally:
        for handle in handles:
            handle.remove()
    return {name: (value / 127).clamp(min=1e-8) for name, value in seen.items()}


def quantize_blocks(backbone, mode: str, backend_name: str, act_scales: Optional[dict] = None) -> int:
    """Replace every linear layer of the blocks by the backend's int8 module; returns how many."""
    chosen = backend(backend_name)
    if mode not in chosen.modes:
        raise UserError(f"backend {chosen.name} has no {mode}", where="--quantize", expected=f"one of {', '.join(chosen.modes)}")
    layers = block_linears(backbone)
    for name, linear in layers:
        scale = (act_scales or {}).get(name)
        if mode == "int8_static" and scale is None:
            raise UserError(f"no calibrated activation scale for {name}", where="--quantize int8_static")
        _set(backbone.model, name, chosen.quantize(linear, mode, scale))
    return len(layers)


def quantized_modules(backbone, backend_name: str) -> dict[str, nn.Module]:
    """name -> outermost quantized module (a wrapper's inner layer is not listed again)."""
    chosen, out = backend(backend_name), {}
    for name, module in backbone.model.named_modules():
        if chosen.is_quantized(module) and not any(name.startswith(q + ".") for q in out):
            out[name] = module
    return out


def restore_blocks(backbone, backend_name: str, mode: str, tensors: dict[str, dict[str, torch.Tensor]]) -> None:
    chosen = backend(backend_name)
    for name, group in tensors.items():
        _set(backbone.model, name, chosen.restore(group, mode))


def _median_ms(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return 1000 * sorted(times)[len(times) // 2]


@torch.no_grad()
def probe(model, backbone_of: Callable, forward: Callable, mode: str, act_scales: Optional[dict] = None,
          repeats: int = 3, slack: float = 1.05) -> dict:
    """Which backend to use for ``mode``: quantize a copy of ``model`` with each available backend,
    time ``forward(copy)`` (median of ``repeats``), and keep torchao unless it is more than ``slack``
    times slower than torch.ao.  Returns {"backend", "timings_ms", "reason"}."""
    usable = [b for b in BACKENDS.values() if mode in b.modes and b.available()]
    if not usable:
        raise UserError(f"no installed backend does {mode}", where="--quantize", expected="pip install torchao==0.18.0")
    if len(usable) == 1:
        return {"backend": usable[0].name, "timings_ms": {}, "reason": f"the only installed backend with {mode}"}
    timings = {}
    for b in usable:
        trial = copy.deepcopy(model)
        quantize_blocks(backbone_of(trial), mode, b.name, act_scales)
        timings[b.name] = round(_median_ms(lambda: forward(trial), repeats), 2)
        del trial
    chosen = "torchao" if timings["torchao"] <= slack * timings["torch.ao"] else "torch.ao"
    reason = ("torchao is not slower" if chosen == "torchao"
              else f"torchao was {timings['torchao'] / timings['torch.ao']:.2f}x slower than torch.ao on this machine")
    return {"backend": chosen, "timings_ms": timings, "reason": reason}
