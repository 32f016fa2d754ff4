"""Fill a git-ignored folder with what the GPU machine lacks for one part of ``benchmarks/gpu.py``.

    python benchmarks/gpu_bundle.py text|vision [--out DIR] [--skip-wheels]     # bash scripts/gpu_bundle.sh ...

Why: the GPU machine this project is sometimes lent installs nothing from the network, its Python 3.12
image lacks some of mmsft's packages and every weight package, and at most 64 MiB travels with the
working tree (the tracked files count too; ``../shared`` does not travel).  One bundle per part:

* ``wheels/``: cp312 / manylinux x86_64 wheels, ``--no-deps``, of the packages mmsft imports on that
  part's path and the image lacks (its package list: ``docs/gpu.md``): ``datasets`` and ``evaluate``
  (the Arrow cache and the metrics) with their missing ``dill`` / ``multiprocess`` -- ``pyarrow``,
  ``pandas`` and ``xxhash`` are on the image, which is why the bundle fits; text adds ``rouge-score``
  (sdist only on PyPI: built here into a pure-Python wheel) and ``nltk`` for ROUGE-L; vision adds
  ``pycocotools`` for detection mAP.  Versions are the ones installed here (what the tests ran).
* ``zoo/<name>/``: the weights, read through ``MMSFT_ZOO_DIR`` (``mmsft.zoo.base``).  MiniLM-L6 is
  stored in fp16 (43 MiB instead of 87) with ``dtype: float32`` in its config, so it loads back as fp32
  master weights; the outputs are checked against the fp32 model here.  MobileNetV2 stays fp32 (14 MB).
* ``tokenizers/smollm2-135m/``: SmolLM2's tokenizer for the tiny random causal LM of the text part.
* ``data/``: the task files as a data root (``MMSFT_DATA_ROOT=<bundle>/data``) with their license
  files: Financial PhraseBank 50Agree (CC BY-NC-SA 3.0, used non-commercially) and Vehicles-OpenImages
  (CC BY 4.0).  The folder is git-ignored: nothing of the data enters the repository.

Re-running reuses what is there (wheels by file name, weights by folder, data by size).  The sizes
are printed per part; over 64 MiB, alone or with the working tree, it exits 1 saying so.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's mmsft
LIMIT = 64 * 2**20  # what travels with the working tree to the GPU machine
PIP_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
COMMON = ["datasets", "evaluate", "dill", "multiprocess"]
PARTS = {
    "text": {"wheels": COMMON + ["rouge-score", "nltk"], "zoo": ["minilm-l6"], "tokenizers": ["smollm2-135m"],
             "data": {"financial_phrasebank": ["Sentences_50Agree.txt", "License.txt", "README.txt", "SOURCE.md"]}},
    "vision": {"wheels": COMMON + ["pycocotools"], "zoo": ["mobilenet-v2"], "tokenizers": [],
               "data": {"vehicles_openimages": None}},  # None: the whole folder
}
SDIST_ONLY = {"rouge-score"}  # no wheel on PyPI: `pip wheel` builds a pure-Python one here
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.txt")
PROBE = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "The company said its net sales fell by 5 % in the quarter."]


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


# ----------------------------------------------------------------------------- wheels
def wheels(folder: Path, names: list[str], *, download: bool = True) -> list[dict]:
    """One wheel per name at the version installed here, downloaded (or built) once; ``download=False``:
    only the ones already there."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        version = md.version(name)
        have = sorted(folder.glob(f"{_norm(name)}-{version}-*.whl"))
        if not have and not download:
            continue
        if not have:
            if name in SDIST_ONLY:
                cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), f"{name}=={version}"]
            else:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *PIP_TARGET, "-d", str(folder), f"{name}=={version}"]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            have = sorted(folder.glob(f"{_norm(name)}-{version}-*.whl"))
            if not have:
                raise SystemExit(f"gpu_bundle: pip gave no wheel for {name}=={version} in {folder}")
        rows.append({"name": name, "version": version, "file": have[0].name, "bytes": have[0].stat().st_size})
    return rows


# ----------------------------------------------------------------------------- weights
def minilm_fp16(target: Path, earlier: dict | None = None) -> dict:
    """MiniLM-L6 saved in fp16 with an fp32 ``dtype`` in its config (loads back as fp32), plus its tokenizer;
    checked against the fp32 model when written (``earlier``: the check recorded then, reused with the folder)."""
    from transformers import AutoModel

    from mmsft import atomic
    from mmsft.zoo import resolve

    source = Path(resolve("minilm-l6").path)  # the package's folder (MMSFT_ZOO_DIR is not set here)
    if (target / "model.safetensors").is_file() and earlier and "min_cosine" in earlier:
        return earlier
    if not (target / "model.safetensors").is_file():
        with atomic.atomic_folder(target, replace=target.exists()) as tmp:
            model = AutoModel.from_pretrained(source, dtype="float32")
            model.half().save_pretrained(tmp)
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = "float32"  # stored fp16 for the trip, trained as fp32 master weights
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            for name in TOKENIZER_FILES:
                if (source / name).is_file():
                    shutil.copy2(source / name, tmp / name)
    return {"source": str(source), "stored": "float16", "loads_as": "float32", **fp16_agreement(source, target)}


def fp16_agreement(fp32: Path, fp16: Path) -> dict:
    """Mean-pooled sentence embeddings of both folders on two finance sentences: max |diff|, min cosine."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(fp16)
    batch = tok(PROBE, padding=True, return_tensors="pt")
    outs = []
    for folder in (fp32, fp16):
        model = AutoModel.from_pretrained(folder).eval()
        if next(model.parameters()).dtype != torch.float32:
            raise SystemExit(f"gpu_bundle: {folder} loads as {next(model.parameters()).dtype}, not float32")
        with torch.no_grad():
            states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1)
        outs.append((states * mask).sum(1) / mask.sum(1))
    cosine = torch.nn.functional.cosine_similarity(outs[0], outs[1], dim=-1)
    return {"max_abs_diff": float((outs[0] - outs[1]).abs().max()), "min_cosine": float(cosine.min())}


def zoo_copy(name: str, target: Path) -> dict:
    """A zoo entry's located folder (converted weights + meta) copied as it is."""
    from mmsft.zoo import ZOO

    source = ZOO.get(name).locate()
    if not any(target.glob("*.safetensors")):
        shutil.copytree(source, target, dirs_exist_ok=True)
    return {"source": str(source), "stored": "as located"}


def tokenizer_copy(name: str, target: Path) -> dict:
    from mmsft.zoo import resolve

    source = Path(resolve(name).path)
    target.mkdir(parents=True, exist_ok=True)
    for file in TOKENIZER_FILES:
        if (source / file).is_file() and size(target / file) != size(source / file):
            shutil.copy2(source / file, target / file)
    return {"source": str(source)}


# ----------------------------------------------------------------------------- data
def data_copy(root: Path, folders: dict, target: Path) -> list[str]:
    """The named files (None: the whole folder) of each data folder under ``root``, copied when missing or resized."""
    copied = []
    for folder, files in folders.items():
        src = root / folder
        items = [src / f for f in files] if files is not None else [p for p in src.rglob("*") if p.is_file()]
        for item in items:
            if not item.is_file():
                raise SystemExit(f"gpu_bundle: {item} not found (the data root is {root}; MMSFT_DATA_ROOT changes it)")
            dst = target / item.relative_to(root)
            if size(dst) != item.stat().st_size:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item, dst)
            copied.append(str(item.relative_to(root)))
    return copied


def tree_bytes() -> int:
    """Tracked plus untracked-not-ignored files of the checkout: they travel with every bundle."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(size(ROOT / f) for f in out.decode().split("\0") if f)


# ----------------------------------------------------------------------------- the bundle
def build(part: str, out: Path, *, skip_wheels: bool = False) -> dict:
    from mmsft.paths import data_root

    spec = PARTS[part]
    out.mkdir(parents=True, exist_ok=True)
    earlier = json.loads((out / "bundle.json").read_text()).get("zoo", {}) if (out / "bundle.json").is_file() else {}
    manifest = {"part": part, "made_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python_target": "3.12 manylinux x86_64",
                "wheels": wheels(out / "wheels", spec["wheels"], download=not skip_wheels), "wheels_skipped": skip_wheels, "zoo": {}, "tokenizers": {}}
    for name in spec["zoo"]:
        manifest["zoo"][name] = minilm_fp16(out / "zoo" / name, earlier.get(name)) if name == "minilm-l6" else zoo_copy(name, out / "zoo" / name)
    for name in spec["tokenizers"]:
        manifest["tokenizers"][name] = tokenizer_copy(name, out / "tokenizers" / name)
    manifest["data"] = data_copy(data_root(), spec["data"], out / "data")
    manifest["bytes"] = {k: size(out / k) for k in ("wheels", "zoo", "tokenizers", "data")}
    manifest["bytes"]["total"] = sum(manifest["bytes"].values())
    manifest["bytes"]["working_tree"] = tree_bytes()
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def report(manifest: dict, out: Path) -> int:
    """Print the sizes; 1 when the bundle, alone or with the working tree, is over the limit."""
    b = manifest["bytes"]
    print(f"bundle {manifest['part']} in {out}:")
    for key in ("wheels", "zoo", "tokenizers", "data"):
        print(f"  {key:11s} {mib(b[key]):>10s}")
    print(f"  {'total':11s} {mib(b['total']):>10s}   (+ working tree {mib(b['working_tree'])} = {mib(b['total'] + b['working_tree'])}; limit {mib(LIMIT)})")
    for name, info in manifest["zoo"].items():
        if "min_cosine" in info:
            print(f"  {name} fp16 vs fp32: max |diff| {info['max_abs_diff']:.2e}, min cosine {info['min_cosine']:.6f}")
    if b["total"] > LIMIT or b["total"] + b["working_tree"] > LIMIT:
        print(f"gpu_bundle: {mib(b['total'])} of bundle + {mib(b['working_tree'])} of working tree is over the {mib(LIMIT)} "
              "that travels to the GPU machine", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=list(PARTS))
    ap.add_argument("--out", type=Path, help="bundle folder (default gpu_bundle/PART, git-ignored)")
    ap.add_argument("--skip-wheels", action="store_true", help="no pip download: weights and data, and the wheels already there (the tests)")
    args = ap.parse_args(argv)
    out = (args.out or ROOT / "gpu_bundle" / args.part).resolve()
    return report(build(args.part, out, skip_wheels=args.skip_wheels), out)


if __name__ == "__main__":
    sys.exit(main())
