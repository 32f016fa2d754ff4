"""What does each augmentation method buy on finance_sentiment, with 10% and with 100% of the training data?

    python benchmarks/augmentation.py [--seeds 3] [--methods token_swap,concat] [--factor 1]
    python benchmarks/augmentation.py --methods none,paraphrase --fractions 0.1   # LM synthesis: slow, opt-in

For every (fraction, method, seed): the task's data is loaded exactly as training loads it (fixed
80/10/10 split, ``data.max_train_samples`` for the 10% subset, ``data.augment: [{method, factor,
seed}]`` adding new rows to train only), then MiniLM-L6 is fine-tuned with the ``frozen`` adapter
preset (frozen backbone, classification head trained with the runner: AdamW lr 3e-3, up to 30
epochs, early stopping on validation accuracy, best weights restored) and scored on the fixed test
split.  Frozen features are what `mmsft train --adapter frozen` caches per run; here they are cached
per text across runs (the backbone is deterministic in eval mode), which makes 42 runs affordable on a
CPU.  Writes ``benchmarks/results/augmentation.{md,json}``; runs already there for other (fraction,
method) cells are kept, so the slow LM methods can be added in a later sitting.  Every finished run is
also saved to ``--work``/stages/ and reused (unless ``--fresh``), so a stopped sitting loses one run at
most, and two invocations can share the seeds of one cell (``--seed-list 0,1`` beside ``--seed-list 2``);
the report is merged with the file's content at writing time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, write_json  # noqa: E402

TASK = "finance_sentiment"
METHODS = ["none", "token_swap", "token_delete", "token_insert", "entity_swap", "template", "concat"]
LM_METHODS = ["paraphrase", "back_translation"]  # generation through a zoo LM: minutes per hundred rows on a CPU
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
            out = self.model.encode(dict(enc))["classification"].float()
            self.features.update(zip(chunk, out))
        if todo:
            self.encoded += len(todo)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")  # atomic: another invocation may read it meanwhile
            torch.save(self.features, tmp)
            os.replace(tmp, self.path)
        return torch.stack([self.features[t] for t in texts])


def run_one(fraction: float, method: str, seed: int, n_train_full: int, factor: float, store_cache: dict) -> dict:
    from mmsft.adapters import apply_adapters
    from mmsft.kinds import KINDS, Prepared
    from mmsft.kinds.text_classification import build_splits
    from mmsft.models import build_model
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
    kind = KINDS.get(cfg.kind)
    tick = time.perf_counter()
    rows, stats = build_splits(cfg.data)  # includes making the augmented rows
    augment_seconds = time.perf_counter() - tick
    set_seed(cfg.train.seed)
    model, tokenizer = build_model(cfg, kind, {"train": {"label": [r["label"] for r in rows["train"]]}})
    set_seed(cfg.train.seed)
    apply_adapters(model, cfg.adapters)
    if "store" not in store_cache:
        from mmsft import paths

        folder = paths.cache_dir() / "benchmarks"
        folder.mkdir(parents=True, exist_ok=True)
        store_cache["store"] = FeatureStore(model, tokenizer, cfg.model.max_length, folder / f"{TASK}-minilm-features.pt")
    store = store_cache["store"]
    splits, lengths = {}, {}
    for name, split_rows in rows.items():
        texts = [r["text"] for r in split_rows]
        splits[name] = FeatureDataset({"classification": store.get(texts)}, {"labels": torch.tensor([r["label"] for r in split_rows])})
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
    return {"fraction": fraction, "method": method, "factor": factor, "seed": seed, "train_rows": len(rows["train"]), "added_rows": added,
            "accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "best_step": result.state.best_step,
            "epochs": result.state.epoch, "train_seconds": round(seconds, 1), "data_seconds": round(augment_seconds, 1)}


def previous_runs(path: Path, fractions: list[float], methods: list[str]) -> list[dict]:
    """Runs of an earlier sitting for the (fraction, method) cells this one does not redo."""
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    keep = [r for r in old.get("runs", []) if not (r["fraction"] in fractions and r["method"] in methods)]
    for r in keep:
        r.setdefault("factor", old.get("factor", 1.0))  # reports before per-run factors had one factor for all
    return keep


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        for method in [m for m in METHODS + LM_METHODS if any(r["method"] == m for r in runs)]:
            group = [r for r in runs if r["fraction"] == fraction and r["method"] == method]
            if not group:
                continue
            acc = [r["accuracy"] for r in group]
            f1 = [r["f1_macro"] for r in group]
            rows.append({"fraction": fraction, "method": method, "accuracy_mean": round(statistics.mean(acc), 4),
                         "accuracy_std": round(statistics.stdev(acc), 4) if len(acc) > 1 else 0.0,
                         "f1_macro_mean": round(statistics.mean(f1), 4), "seeds": len(group),
                         "train_rows": group[0]["train_rows"], "added_rows": group[0]["added_rows"], "factor": group[0]["factor"]})
    return rows


def markdown(rows: list[dict], runs: list[dict], command: str, kept: int, n_test: int, encoded: int, wall: float) -> str:
    lines = header("Augmentation on finance_sentiment (MiniLM-L6, frozen adapter)", command)
    if kept:
        lines[-1:-1] = [f"- {kept} runs are kept from earlier sittings or from an invocation beside this one (cells or seeds this "
                        "command did not name; same script, see the `Every run` table); the other runs are this command's."]
    lines += [
        "## Set-up",
        "",
        f"- Task `{TASK}` (Financial PhraseBank 50Agree, 3 classes), its fixed stratified 80/10/10 split after exact dedupe; "
        f"test = {n_test} sentences, the same in every run.",
        "- 10% = `data.max_train_samples` = the first 10% of the (shuffled) train split, the same subset in every run; 100% = all of train.",
        "- Each method is one `data.augment: [{method: M, factor: F, seed: S}]` entry: about F new rows per train row (the `factor` "
        "column), made from train rows only after splitting (rows equal to a validation/test text are dropped); default options.",
        "- `paraphrase` (SmolLM2-135M-Instruct) and `back_translation` (Gemma-3-270M, English → German → English) generate text with "
        "an LM; outputs that copy the source, change its numbers or its length too much are dropped, so `added` can fall short of "
        "the factor. Their cost is the `data s` column (loading + augmenting; `train s` is head training only).",
        "- Model: `minilm-l6` backbone with the `frozen` adapter preset: the backbone is frozen, only the classification head trains "
        "(the task's runner: AdamW lr 3e-3, no weight decay, linear schedule, up to 30 epochs, early stopping on validation accuracy "
        "with patience 3, best weights restored). Chosen because it is cheap enough for 42 runs on a CPU and it is the exact "
        "`mmsft train --adapter frozen` head training; the frozen features are cached per text across runs instead of per run. "
        "LoRA or full fine-tuning may profit differently from augmentation (not measured here).",
        "- 3 seeds per cell (`train.seed` and the augmentation seed both = 0, 1, 2); mean and sample standard deviation of test accuracy.",
        "",
        "## Results (test accuracy, mean ± std over seeds)",
        "",
        "| train data | method | factor | train rows | accuracy | Δ vs none | macro-F1 | seeds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r["fraction"]: r["accuracy_mean"] for r in rows if r["method"] == "none"}
    for r in rows:
        delta = r["accuracy_mean"] - base.get(r["fraction"], r["accuracy_mean"])
        lines.append(f"| {r['fraction']:.0%} | {r['method']} | {r['factor']:g} | {r['train_rows']:,} | {r['accuracy_mean']:.4f} ± "
                     f"{r['accuracy_std']:.4f} | {delta:+.4f} | {r['f1_macro_mean']:.4f} | {r['seeds']} |")
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
              "## Every run", "", "| fraction | method | seed | train rows | added | accuracy | macro-F1 | best step | train s | data s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['fraction']:.0%} | {r['method']} | {r['seed']} | {r['train_rows']} | {r['added_rows']} | {r['accuracy']:.4f} | "
                     f"{r['f1_macro']:.4f} | {r['best_step']} | {r['train_seconds']} | {r.get('data_seconds', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated; 'none' is the baseline; LM methods (opt-in, slow): {', '.join(LM_METHODS)}")
    parser.add_argument("--fractions", default="0.1,1.0")
    parser.add_argument("--factor", type=float, default=1.0, help="new rows per train row")
    parser.add_argument("--seed-list", help="comma-separated seeds to run (default 0..seeds-1), e.g. to split a cell over processes")
    parser.add_argument("--out", default=str(RESULTS / "augmentation"), help="output path without extension")
    parser.add_argument("--work", default="runs/bench-augmentation", help="finished runs are saved under WORK/stages")
    parser.add_argument("--fresh", action="store_true", help="recompute runs already saved in WORK/stages")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from mmsft.kinds.text_classification import build_splits
    from mmsft.spec import build_run_config

    base = build_splits(build_run_config(TASK, "frozen").data)[0]
    n_train, n_test = len(base["train"]), len(base["test"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out)
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    stages, store, start, runs = Path(args.work) / "stages", {}, time.perf_counter(), []
    for fraction in fractions:
        for method in methods:
            for seed in seeds:
                stage = stages / f"{fraction:g}-{method}-{args.factor:g}-{seed}.json"
                if stage.is_file() and not args.fresh:
                    run = json.loads(stage.read_text())
                else:
                    run = run_one(fraction, method, seed, n_train, args.factor, store)
                    write_json(stage, run)
                print(json.dumps(run), flush=True)
                runs.append(run)
    # other cells as the file holds them now (another invocation may have written meanwhile), then the other seeds of these cells
    kept = previous_runs(out.with_suffix(".json"), fractions, methods)
    for stage in sorted(stages.glob("*.json")) if stages.is_dir() else []:
        run = json.loads(stage.read_text())
        if run["fraction"] in fractions and run["method"] in methods and run["factor"] == args.factor and run["seed"] not in seeds:
            kept.append(run)
    order = {m: i for i, m in enumerate(METHODS + LM_METHODS)}
    n_new, runs = len(runs), sorted(kept + runs, key=lambda r: (r["fraction"], order.get(r["method"], 99), r["factor"], r["seed"]))
    rows = summarise(runs)
    command = command_line("augmentation.py")
    encoded = store["store"].encoded if store else 0
    out.with_suffix(".md").write_text(markdown(rows, runs, command, len(runs) - n_new, n_test, encoded, time.perf_counter() - start))
    write_json(out.with_suffix(".json"), {"task": TASK, "adapter": "frozen", "backbone": "minilm-l6", "rows": rows, "runs": runs})
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
