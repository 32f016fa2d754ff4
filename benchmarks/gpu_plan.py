"""The steps of one part of the GPU check (``benchmarks/gpu.py``), as data: what ``--dry-run`` prints is
what a real run executes, so the two cannot drift apart.

Sizes.  GPU (bf16 on cuda): finance_sentiment LoRA and full with the task's defaults (3 epochs, as the
CPU rows of ``adapters.json``), a tiny random Llama (2 layers, 64 wide, SmolLM2's tokenizer) trained
with LoRA for 3 epochs on 512 toy translation pairs and decoded on 32, and traffic_vehicles for 2
epochs (its default detector).  Each part has a 450 s budget (installs included): a step gets what is
left, and the report says which steps ran out.  CPU smoke (fp32, one thread): the same steps on 152
finance rows (batches of 8), 32 toy pairs, 8 + 4 images, at most 2 optimizer steps each.
"""
from __future__ import annotations

import os
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_corpus import write_parallel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUDGET = {"gpu": 450, "cpu-smoke": 600}  # seconds per part, installs included
GPU_TRAIN = ["train.device=cuda", "train.mixed_precision=bf16"]
SMOKE_TRAIN = ["train.device=cpu", "train.mixed_precision=no", "train.threads=1", "train.max_steps=2"]
IMPORTS = {  # what the part's runs import (the probe imports them first, to fail early and clearly)
    "text": ["mmsft", "mmsft.api", "mmsft.pipeline", "mmsft.training.runner", "mmsft.kinds.text_classification",
             "mmsft.kinds.generation", "mmsft.data.cache", "datasets", "evaluate", "peft", "rouge_score.rouge_scorer", "sacrebleu"],
    "vision": ["mmsft", "mmsft.api", "mmsft.pipeline", "mmsft.training.runner", "mmsft.kinds.detection", "mmsft.vision",
               "datasets", "evaluate", "torchvision", "timm", "pycocotools"],
}
METRICS = {"text": ["accuracy", "f1_macro", "bleu", "chrf", "rouge_l", "eos_rate"], "vision": ["detection_map"]}
ZOO = {"text": ["minilm-l6"], "vision": ["mobilenet-v2"]}
PACKAGES = ["torch", "torchvision", "transformers", "tokenizers", "peft", "accelerate", "timm", "safetensors", "datasets",
            "evaluate", "pyarrow", "pandas", "huggingface-hub", "sacrebleu", "rouge-score", "nltk", "pycocotools",
            "scikit-learn", "numpy"]


@dataclass
class Step:
    title: str
    argv: Optional[list[str]] = None  # a command, or
    call: Optional[Callable[[], None]] = None  # a function of this script (``what`` says what it writes)
    what: str = ""
    timeout: int = 300
    fatal: bool = False  # a failure stops the part (installs, imports)
    check: Optional[str] = None  # a training check: its run folder's metrics.json is the report's row
    run_dir: Optional[Path] = None
    skipped: Optional[str] = None  # why the step does nothing in this mode

    def describe(self, env_keys: dict) -> str:
        if self.skipped:
            return f"(skipped: {self.skipped})"
        if self.argv:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_keys.items())
            return f"{env} {shlex.join(self.argv)}" if env else shlex.join(self.argv)
        return self.what


@dataclass
class Context:
    part: str
    bundle: Path
    work: Path
    smoke: bool
    extra: list[str] = field(default_factory=list)  # --set overrides for every training

    @property
    def mode(self) -> str:
        return "cpu-smoke" if self.smoke else "gpu"

    @property
    def site(self) -> Path:
        return self.work / "site"

    @property
    def data_root(self) -> Path:
        return self.work / "smoke-data" if self.smoke else self.bundle / "data"

    def env(self) -> dict:
        """What every step's process gets on top of the current environment (also printed by --dry-run)."""
        path = [str(ROOT), *([] if self.smoke else [str(self.site)])]
        return {"PYTHONPATH": os.pathsep.join(path + [p for p in [os.environ.get("PYTHONPATH", "")] if p]),
                "MMSFT_DATA_ROOT": str(self.data_root), "MMSFT_ZOO_DIR": str(self.bundle / "zoo"),
                "MMSFT_CACHE": str(self.work / "cache"), "MMSFT_RUNS_DIR": str(self.work / "runs"),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def train(ctx: Context, name: str, task: str, adapter: Optional[str], gpu: list[str], smoke: list[str], timeout: int) -> Step:
    out = ctx.work / "runs" / name
    argv = [sys.executable, "-m", "mmsft", "train", task, *(["--adapter", adapter] if adapter else []), "--output", str(out),
            *(SMOKE_TRAIN + smoke if ctx.smoke else GPU_TRAIN + gpu), *ctx.extra]
    return Step(f"train {name}", argv=argv, timeout=timeout, check=name, run_dir=out)


def plan(ctx: Context) -> list[Step]:
    """Installs, the probe, the part's trainings; the report is written by ``gpu.py`` after them."""
    py, wheels = sys.executable, sorted((ctx.bundle / "wheels").glob("*.whl"))
    smoke_skip = "--cpu-smoke: this machine has its own packages" if ctx.smoke else None
    steps = [
        Step("install the bundle's wheels offline",
             argv=[py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--quiet", "--target", str(ctx.site),
                   *([str(w) for w in wheels] or [str(ctx.bundle / "wheels" / "*.whl")])],
             timeout=120, fatal=True, skipped=smoke_skip or (None if wheels else "the bundle has no wheels (--skip-wheels)")),
        # editable, no deps, no build isolation (nothing to fetch); PYTHONPATH holds the checkout either way, so an
        # image whose setuptools is too old for pyproject.toml still runs this checkout's mmsft
        Step("install mmsft (--no-deps, editable)",
             argv=[py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation", "--quiet", "-e", str(ROOT)],
             timeout=120, skipped=smoke_skip),
        Step("versions, imports, metrics and carried weights",
             argv=[py, str(ROOT / "benchmarks" / "gpu_probe.py"), "--out", str(ctx.work / "probe.json"),
                   "--imports", ",".join(IMPORTS[ctx.part]), "--metrics", ",".join(METRICS[ctx.part]),
                   "--zoo", ",".join(ZOO[ctx.part]), "--packages", ",".join(PACKAGES),
                   "--bundle-wheels", ",".join(w.name for w in wheels)],
             timeout=180, fatal=True),
    ]
    if ctx.smoke:
        steps.insert(0, Step("smoke data subset", call=lambda: smoke_data(ctx),
                             what=f"every 32nd finance row / the first 8 + 4 images into {ctx.data_root}"))
    if ctx.part == "text":
        small = ["train.batch_size=8", "train.eval_batch_size=64"]
        steps += [train(ctx, "finance_sentiment-lora", "finance_sentiment", "lora", [], small, 150),
                  train(ctx, "finance_sentiment-full", "finance_sentiment", "full", [], small, 150),
                  Step("tiny causal LM and toy translation task", call=lambda: write_generation(ctx),
                       what=f"a random 2-layer Llama (SmolLM2 tokenizer) and toy en-de pairs in {ctx.work / 'gen'}"),
                  train(ctx, "tiny_lm-lora", str(ctx.work / "gen" / "toy_mt.yaml"), "lora", [], [], 120)]
    else:
        steps += [train(ctx, "traffic_vehicles", "traffic_vehicles", None, ["train.epochs=2"],
                        ["train.epochs=1", "data.max_train_samples=8", "data.max_eval_samples=4"], 300)]
    return steps


# ----------------------------------------------------------------------------- files the steps write
def smoke_data(ctx: Context) -> None:
    """A small copy of the bundle's data (same layout, same readers) for the CPU smoke run."""
    import shutil

    src, dst = ctx.bundle / "data", ctx.data_root
    finance = src / "financial_phrasebank" / "Sentences_50Agree.txt"
    if finance.is_file():
        (dst / "financial_phrasebank").mkdir(parents=True, exist_ok=True)
        lines = finance.read_bytes().splitlines(keepends=True)
        (dst / "financial_phrasebank" / finance.name).write_bytes(b"".join(lines[::32]))
    vehicles = src / "vehicles_openimages"
    if vehicles.is_dir():
        for split, n in (("train", 8), ("valid", 4), ("test", 4)):
            for sub in ("images", "labels"):
                (dst / "vehicles_openimages" / split / sub).mkdir(parents=True, exist_ok=True)
            for image in sorted((vehicles / split / "images").glob("*.jpg"))[:n]:
                shutil.copyfile(image, dst / "vehicles_openimages" / split / "images" / image.name)
                label = vehicles / split / "labels" / f"{image.stem}.txt"
                shutil.copyfile(label, dst / "vehicles_openimages" / split / "labels" / label.name)
        shutil.copyfile(vehicles / "data.yaml", dst / "vehicles_openimages" / "data.yaml")




def write_generation(ctx: Context) -> None:
    """A random tiny Llama with SmolLM2's tokenizer and a toy en-de task on it (as the tests build them)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gen = ctx.work / "gen"
    tok = AutoTokenizer.from_pretrained(ctx.bundle / "tokenizers" / "smollm2-135m")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(gen / "tiny-lm")
    tok.save_pretrained(gen / "tiny-lm")
    sizes = {"train": 32 if ctx.smoke else 512, "val": 8 if ctx.smoke else 16, "test": 8 if ctx.smoke else 32}
    for seed, (split, n) in enumerate(sizes.items()):
        write_parallel(gen / "data", split, n, seed)
    (gen / "toy_mt.yaml").write_text(textwrap.dedent(f"""\
        name: toy_mt
        kind: generation
        data:
          format: parallel
          root: {gen / 'data'}
          files: {{train: "train.{{lang}}", validation: "val.{{lang}}", test: "test.{{lang}}"}}
          prompt: "Translate {{source_language}} to {{target_language}}: {{source}}"
          template: role
          generate: {{max_new_tokens: 12, batch_size: 32}}
        model: {{backbone: {gen / 'tiny-lm'}, max_length: 64}}
        metrics: [bleu, chrf, rouge_l, exact_match, eos_rate, length_ratio]
        train: {{epochs: 3, batch_size: 16, eval_batch_size: 32, lr: 5.0e-3, log_every_steps: 8}}
        """))
