"""Probe of the environment the GPU check's runs get: versions, imports, metrics, carried weights.

    python benchmarks/gpu_probe.py --out probe.json --imports mmsft,datasets --metrics accuracy --zoo minilm-l6 \
        --packages torch,transformers --bundle-wheels datasets-5.2.0-py3-none-any.whl

Run by ``benchmarks/gpu.py`` in a process of its own with the check's environment (bundle wheels and
this checkout on PYTHONPATH, MMSFT_ZOO_DIR), so it sees what the trainings will see.  Why first: a
missing module or a wheel whose requirements the image does not meet then fails in seconds, with its
name, instead of minutes into a training.  Writes JSON: ``versions``, ``device``, ``imports``,
``metrics``, ``zoo``, ``problems`` (an import, metric or weight that fails, or carried weights that
do not load as float32: exit 1, after writing it) and ``warnings`` (a bundled wheel's requirement the
image meets with another version: reported, not fatal, since the imports above are the real test).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import platform
import sys
import traceback
from pathlib import Path


def names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def version(name: str):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def requirement_problems(wheel_files: list[str]) -> list[str]:
    """Each bundled wheel's own requirements (no extras) that the environment misses or fails."""
    from packaging.requirements import Requirement

    problems = []
    for file in wheel_files:
        dist = file.split("-")[0]
        for text in md.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = version(req.name)
            if have is None:
                problems.append(f"{dist} needs {req}: not installed")
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{dist} needs {req}: found {have}")
    return problems


def device() -> dict:
    import torch

    info = {"torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_mib=round(props.total_memory / 2**20), capability=f"{props.major}.{props.minor}",
                    bf16=torch.cuda.is_bf16_supported())
    return info


def zoo(name: str) -> dict:
    """Where the zoo name resolves (carried or package) and, for a Hugging Face folder, the loaded dtype."""
    from mmsft.zoo import carried_folder, resolve

    path = resolve(name).path
    out = {"path": path, "carried": carried_folder(name) is not None}
    if (Path(path) / "config.json").is_file():
        from transformers import AutoModel

        out["loads_as"] = str(next(AutoModel.from_pretrained(path).parameters()).dtype).replace("torch.", "")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    for flag in ("--imports", "--metrics", "--zoo", "--packages", "--bundle-wheels"):
        ap.add_argument(flag, default="")
    args = ap.parse_args()
    result = {"python": platform.python_version(), "executable": sys.executable, "problems": [],
              "versions": {n: version(n) for n in names(args.packages)}, "device": {}, "imports": {}, "metrics": {}, "zoo": {},
              "bundle_wheels": names(args.bundle_wheels)}
    result["warnings"] = requirement_problems(result["bundle_wheels"])

    def attempt(section: str, key: str, fn):
        try:
            result[section][key] = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported by name, the probe goes on
            result[section][key] = f"FAILED: {type(exc).__name__}: {exc}"
            result["problems"].append(f"{section} {key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            traceback.print_exc()

    for module in names(args.imports):
        attempt("imports", module, lambda m=module: getattr(importlib.import_module(m), "__file__", None) or "ok")
    attempt("device", "torch", device)
    found = result["device"].pop("torch")
    result["device"] = found if isinstance(found, dict) else {"error": found}
    for metric in names(args.metrics):
        attempt("metrics", metric, lambda m=metric: type(importlib.import_module("mmsft.metrics").load(m)).__name__)
    for name in names(args.zoo):
        attempt("zoo", name, lambda n=name: zoo(n))
        loads_as = result["zoo"][name].get("loads_as", "float32") if isinstance(result["zoo"][name], dict) else "float32"
        if loads_as != "float32":
            result["problems"].append(f"zoo {name}: loads as {loads_as}, not float32 (the runner expects fp32 master weights)")
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for line in result["warnings"]:
        print(f"probe: warning: {line}", file=sys.stderr)
    for line in result["problems"]:
        print(f"probe: {line}", file=sys.stderr)
    print(json.dumps({"python": result["python"], **{k: v for k, v in result["versions"].items() if v}, **result["device"]}))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
