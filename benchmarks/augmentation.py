"""What does each augmentation method buy on finance_sentiment, with 10% and with 100% of the training data?

    nice -n 19 python benchmarks/augmentation.py [--seeds 3] [--methods token_swap,concat] [--factor 1]

For every (fraction, method, seed): the task's data is loaded exactly as training loads it (fixed
80/10/10 split, ``data.max_train_samples`` for the 10% subset, ``data.augment: [{method, factor,
seed}]`` adding new rows to train only), then MiniLM-L6 is fine-tuned with the ``frozen`` adapter
preset (frozen backbone, classification head trained with the runner: AdamW lr 3e-3, up to 30
epochs, early stopping on validation accuracy, best weights restored) and scored on the fixed test
split.  Frozen features are what `mmsft train --adapter frozen` caches per run; here they are cached
per text across runs (the backbone is deterministic in eval mode), which makes 42 runs affordable on a
CPU.  Writes ``benchmarks/results/augmentation.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, header, write_json  # noqa: E402

TASK = "finance_sentiment"
METHODS = ["none", "token_swap", "token_delete", "token_insert", "entity_swap", "template", "concat"]
FRACTIONS = [0.1, 1.0]


class FeatureStore:
    """Text -> frozen pooled features, encoded once per distinct text and kept on disk between runs."""

    def __init__(self, model, tokenizer, max_length: int, path: Path):
        self.model, self.tokenizer, self.max_length, self.path = model, tokenizer, max_length, path
        self.features: dict[str, torch.Tensor] = torch.load(path) if path.is_file() else {}
        self.encoded = 0

    @torch.no_grad()
    def get(self, texts: list[str]) -> torch.Tensor:
        from tqdm.auto import tqdm

        todo = sorted({t for t in texts if t not in self.features}, key=len)
        self.model.eval()
        for start in tqdm(range(0, len(todo), 64), desc="encode new texts", disable=len(todo) < 256, mininterval=10):
            chunk = todo[start : start + 64]
            enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            out = self.model.encode(**enc).float()
            self.features.update(zip(chunk, out))
        if todo:
            self.encoded += len(todo)
            torch.save(self.features, self.path)
        return torch.stack([self.features[t] for t in texts])


def run_one(fraction: float, method: str, seed: int, n_train_full: int, factor: float, store_cache: dict) -> dict:
    from mmsft.adapters import ADAPTERS
    from mmsft.kinds import KINDS, Prepared
    from mmsft.kinds.text_classification import build_splits
    from mmsft.pipeline import set_seed
    from mmsft.spec import build_run_config
    from mmsft.training.batching import FeatureDataset, stack_collate
    from mmsft.training.runner import Runner

    overrides = [f"train.seed={seed}", "train.device=cpu"]
    if fraction < 1:
        overrides.append(f"data.max_train_samples={round(fraction * n_train_full)}")
    if method != "none":
        overrides.append(f"data.augment=[{{method: {method}, factor: {factor}, seed: {seed}}}]")
    cfg = build_run_config(TASK, "frozen", overrides)
    kind, adapter = KINDS.get(cfg.kind), ADAPTERS.get(cfg.adapter.method)
    rows, stats = build_splits(cfg.data)
    set_seed(cfg.train.seed)
    model, tokenizer = kind.build_model(cfg, {"train": {"label": [r["label"] for r in rows["train"]]}})
    set_seed(cfg.train.seed)
    adapter.apply(model, cfg.adapter.options, getattr(model, "zoo_entry", None))
    if "store" not in store_cache:
        from mmsft import paths

        folder = paths.cache_dir() / "benchmarks"
        folder.mkdir(parents=True, exist_ok=True)
        store_cache["store"] = FeatureStore(model, tokenizer, cfg.model.max_length, folder / f"{TASK}-minilm-features.pt")
    store = store_cache["store"]
    splits, lengths = {}, {}
    for name, split_rows in rows.items():
        texts = [r["text"] for r in split_rows]
        splits[name] = FeatureDataset(store.get(texts), torch.tensor([r["label"] for r in split_rows]))
        lengths[name] = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]]
    prepared = Prepared(splits, stack_collate, lengths)
    with tempfile.TemporaryDirectory() as run_dir:
        runner = Runner(cfg.train, model, splits["train"], stack_collate, lengths["train"],
                        lambda m: kind.evaluate(cfg, m, prepared, "validation").metrics, Path(run_dir))
        tick = time.perf_counter()
        result = runner.fit()
        seconds = time.perf_counter() - tick
        test = kind.evaluate(cfg, runner.accelerator.unwrap_model(runner.model), prepared, "test").metrics
    added = sum(v["added"] for v in stats.get("augment", {}).values())
    return {"fraction": fraction, "method": method, "seed": seed, "train_rows": len(rows["train"]), "added_rows": added,
            "accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "best_step": result.state.best_step,
            "epochs": result.state.epoch, "train_seconds": round(seconds, 1)}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        for method in [m for m in METHODS if any(r["method"] == m for r in runs)]:
            group = [r for r in runs if r["fraction"] == fraction and r["method"] == method]
            if not group:
                continue
            acc = [r["accuracy"] for r in group]
            f1 = [r["f1_macro"] for r in group]
            rows.append({"fraction": fraction, "method": method, "accuracy_mean": round(statistics.mean(acc), 4),
                         "accuracy_std": round(statistics.stdev(acc), 4) if len(acc) > 1 else 0.0,
                         "f1_macro_mean": round(statistics.mean(f1), 4), "seeds": len(group),
                         "train_rows": group[0]["train_rows"], "added_rows": group[0]["added_rows"]})
    return rows


def markdown(rows: list[dict], runs: list[dict], command: str, factor: float, n_test: int, encoded: int, wall: float) -> str:
    lines = header("Augmentation on finance_sentiment (MiniLM-L6, frozen adapter)", command)
    lines += [
        "## Set-up",
        "",
        f"- Task `{TASK}` (Financial PhraseBank 50Agree, 3 classes), its fixed stratified 80/10/10 split after exact dedupe; "
        f"test = {n_test} sentences, the same in every run.",
        "- 10% = `data.max_train_samples` = the first 10% of the (shuffled) train split, the same subset in every run; 100% = all of train.",
        f"- Each method is one `data.augment: [{{method: M, factor: {factor:g}, seed: S}}]` entry: about {factor:g} new row per train row, "
        "made from train rows only after splitting (rows equal to a validation/test text are dropped); default options.",
        "- Model: `minilm-l6` backbone with the `frozen` adapter preset: the backbone is frozen, only the classification head trains "
        "(the task's runner: AdamW lr 3e-3, no weight decay, linear schedule, up to 30 epochs, early stopping on validation accuracy "
        "with patience 3, best weights restored). Chosen because it is cheap enough for 42 runs on a CPU and it is the exact "
        "`mmsft train --adapter frozen` head training; the frozen features are cached per text across runs instead of per run. "
        "LoRA or full fine-tuning may profit differently from augmentation (not measured here).",
        "- 3 seeds per cell (`train.seed` and the augmentation seed both = 0, 1, 2); mean and sample standard deviation of test accuracy.",
        "- Not measured: paraphrase / back-translation through a zoo causal LM (no such method is registered; the zoo's causal LMs "
        "are a 135M chat model and a 270M base model, too weak for faithful paraphrases and slow on this CPU).",
        "",
        "## Results (test accuracy, mean ± std over seeds)",
        "",
        "| train data | method | train rows | accuracy | Δ vs none | macro-F1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    base = {r["fraction"]: r["accuracy_mean"] for r in rows if r["method"] == "none"}
    for r in rows:
        delta = r["accuracy_mean"] - base.get(r["fraction"], r["accuracy_mean"])
        lines.append(f"| {r['fraction']:.0%} | {r['method']} | {r['train_rows']:,} | {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f} | "
                     f"{delta:+.4f} | {r['f1_macro_mean']:.4f} |")
    lines += ["", "## What pays", ""]
    for fraction in sorted(base):
        cells = [r for r in rows if r["fraction"] == fraction and r["method"] != "none"]
        best = max(cells, key=lambda r: r["accuracy_mean"]) if cells else None
        if best is None:
            continue
        noise = max([r["accuracy_std"] for r in rows if r["fraction"] == fraction] + [1e-9])
        helps = [r["method"] for r in cells if r["accuracy_mean"] - base[fraction] > noise]
        hurts = [r["method"] for r in cells if base[fraction] - r["accuracy_mean"] > noise]
        lines.append(f"- {fraction:.0%} of train: best `{best['method']}` ({best['accuracy_mean'] - base[fraction]:+.4f}); "
                     f"gains larger than the largest seed std ({noise:.4f}): {', '.join(helps) or 'none'}; "
                     f"losses larger than it: {', '.join(hurts) or 'none'}.")
    lines += ["", f"Texts encoded by the frozen backbone in this invocation: {encoded:,}; wall time {wall / 60:.1f} min.", "",
              "## Every run", "", "| fraction | method | seed | train rows | added | accuracy | macro-F1 | best step | train s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['fraction']:.0%} | {r['method']} | {r['seed']} | {r['train_rows']} | {r['added_rows']} | {r['accuracy']:.4f} | "
                     f"{r['f1_macro']:.4f} | {r['best_step']} | {r['train_seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; 'none' is the baseline")
    parser.add_argument("--fractions", default="0.1,1.0")
    parser.add_argument("--factor", type=float, default=1.0, help="new rows per train row")
    parser.add_argument("--out", default=str(RESULTS / "augmentation"), help="output path without extension")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from mmsft.kinds.text_classification import build_splits
    from mmsft.spec import build_run_config

    base = build_splits(build_run_config(TASK, "frozen").data)[0]
    n_train, n_test = len(base["train"]), len(base["test"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runs, store, start = [], {}, time.perf_counter()
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for method in methods:
            for seed in range(args.seeds):
                run = run_one(fraction, method, seed, n_train, args.factor, store)
                print(json.dumps(run), flush=True)
                runs.append(run)
    rows = summarise(runs)
    command = "nice -n 19 python " + " ".join(["benchmarks/augmentation.py", *sys.argv[1:]])
    out = Path(args.out)
    encoded = store["store"].encoded if store else 0
    out.with_suffix(".md").write_text(markdown(rows, runs, command, args.factor, n_test, encoded, time.perf_counter() - start))
    write_json(out.with_suffix(".json"), {"task": TASK, "adapter": "frozen", "backbone": "minilm-l6", "factor": args.factor,
                                          "rows": rows, "runs": runs})
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
