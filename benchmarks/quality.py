"""Quality table: every shipped classification task with its default adapter, against a TF-IDF floor.

    python benchmarks/quality.py [--tasks ...] [--jobs 2] [--fresh] [--quick]

For each task in tasks/ whose kind is text_classification: `mmsft train TASK --adapter A [overrides]`
exactly as the task YAML's first line says (its default adapter and overrides), one torch thread, in
its own process; then test accuracy and macro-F1 from its metrics.json and the train time.  The floor
is TF-IDF (word 1-2-grams, sublinear tf) + logistic regression (scikit-learn), fit on the same train
split loaded through the task's own reader / cleaning / split, C chosen on the validation split by
macro-F1, scored once on the same test split.  Writes benchmarks/results/quality.{md,json} after every
task; a task with a current row is skipped (``--fresh`` retrains), a run that was interrupted resumes
from its last checkpoint (`mmsft train --resume`).  ``--jobs 2`` trains two tasks at once (one core
each).  ``--quick``: 64 train rows, 4 steps, written to the work folder only (a smoke run).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured  # noqa: E402

from mmsft.atomic import write_json, write_text  # noqa: E402  (common put this checkout first on sys.path)

PROJECT = RESULTS.parent.parent
QUICK = ["data.max_train_samples=64", "train.max_steps=4", "train.eval_every_steps=0"]
C_GRID = (0.5, 2.0, 8.0, 32.0)
MARGINS = {"medical_abstracts": 0.05}  # required macro-F1 margin over the floor (issue 12); others: > 0


def shipped_tasks() -> dict[str, tuple[str, list[str]]]:
    """{task: (default adapter, overrides)} for the shipped classification tasks, from each YAML's
    first line (`# mmsft train NAME --adapter A key=value ...`) or its `adapter:` key."""
    import yaml

    out = {}
    for path in sorted((PROJECT / "tasks").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if spec.get("kind") != "text_classification":
            continue
        words = shlex.split(path.read_text().splitlines()[0].lstrip("#"))
        adapter = words[words.index("--adapter") + 1] if "--adapter" in words else spec.get("adapter", "full")
        out[path.stem] = (adapter, [w for w in words if "=" in w and not w.startswith("-")])
    return out


def tfidf_floor(task: str, adapter: str, overrides: list[str]) -> dict:
    """TF-IDF + logistic regression on the task's own split (C picked on validation macro-F1)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from mmsft.registry import KINDS
    from mmsft.spec import build_run_config

    cfg = build_run_config(task, adapter, overrides)
    data = KINDS.get(cfg.kind).load_data(cfg)
    split = {name: (list(data[name]["text"]), list(data[name]["label"])) for name in ("train", "validation", "test")}
    tick = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(split["train"][0]) > 1000 else 1)
    x = {name: (vectorizer.fit_transform(t) if name == "train" else vectorizer.transform(t)) for name, (t, _) in split.items()}
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=3000).fit(x["train"], split["train"][1])
        f1 = f1_score(split["validation"][1], model.predict(x["validation"]), average="macro")
        if best is None or f1 > best[0]:
            best = (f1, c, model)
    predicted = best[2].predict(x["test"])
    labels = list(range(len(cfg.data.labels)))
    return {"tfidf_accuracy": round(float(accuracy_score(split["test"][1], predicted)), 4),
            "tfidf_f1_macro": round(float(f1_score(split["test"][1], predicted, average="macro", labels=labels)), 4),
            "tfidf_C": best[1], "tfidf_seconds": round(time.perf_counter() - tick, 1), "test_rows": len(predicted)}


def train(task: str, adapter: str, overrides: list[str], run: Path, log: Path) -> dict:
    """`mmsft train` in its own process (resumed when an earlier sitting left checkpoints)."""
    if (run / "metrics.json").is_file():
        return json.loads((run / "metrics.json").read_text())
    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step-*"))
    if run.exists() and not resume:
        import shutil

        shutil.rmtree(run)
    cmd = [sys.executable, "-m", "mmsft", "train", task, "--adapter", adapter, *(["--resume", str(run)] if resume else ["--output", str(run)]),
           *([] if resume else [*overrides, "train.threads=1"])]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        print("$", " ".join(cmd), file=fh, flush=True)
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=PROJECT)
    return json.loads((run / "metrics.json").read_text())


def render(rows: list[dict], command: str, quick: bool) -> str:
    lines = header("Quality table: every shipped classification task, default adapter vs TF-IDF floor", command)
    if quick:
        lines += ["**Quick smoke mode (64 train rows, 4 steps): the numbers mean nothing.**", ""]
    lines += ["Each row: `mmsft train TASK --adapter A` as the task YAML's first line says (one torch thread), scored once on the",
              "task's test split; the floor is TF-IDF (1-2-grams) + logistic regression (scikit-learn) on the same train split,",
              "C chosen on validation macro-F1. Margin = macro-F1 minus the floor's, in points.", "",
              "| task | adapter | test accuracy | macro-F1 | TF-IDF accuracy | TF-IDF macro-F1 | margin (F1 pts) | required | train s | measured | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        margin = r["f1_macro"] - r["tfidf_f1_macro"]
        need = MARGINS.get(r["task"], 0.0)
        ok = "✅" if (margin >= need if need else margin > 0) else "❌"
        lines.append(f"| {r['task']} | {r['adapter']} | {r['accuracy']:.4f} | {r['f1_macro']:.4f} | {r['tfidf_accuracy']:.4f} | "
                     f"{r['tfidf_f1_macro']:.4f} | {100 * margin:+.2f} | > {100 * need:.0f} {ok} | {r['train_seconds']:.0f} | "
                     f"{r.get('measured_at', '—')} | {r.get('load_before', '—')} |")
    return "\n".join(lines + [""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", help="default: every shipped text_classification task")
    ap.add_argument("--jobs", type=int, default=1, help="tasks trained at once, one core each")
    ap.add_argument("--work", type=Path, default=None, help="run folders and logs (default runs/bench-quality[-quick])")
    ap.add_argument("--fresh", action="store_true", help="retrain tasks that already have a row")
    ap.add_argument("--quick", action="store_true", help="smoke mode; results stay in the work folder")
    args = ap.parse_args()

    tasks = shipped_tasks()
    unknown = sorted(set(args.tasks or []) - set(tasks))
    if unknown:
        ap.error(f"not a shipped classification task: {', '.join(unknown)} (known: {', '.join(tasks)})")
    work = args.work or PROJECT / "runs" / ("bench-quality-quick" if args.quick else "bench-quality")
    out = work if args.quick else RESULTS
    json_path = out / "quality.json"
    command = command_line("quality.py")
    lock = threading.Lock()

    def rows_on_disk() -> list[dict]:
        return json.loads(json_path.read_text())["rows"] if json_path.is_file() else []

    def one(task: str) -> None:
        adapter, overrides = tasks[task]
        overrides = [*overrides, *(QUICK if args.quick else [])]
        key = {"adapter": adapter, "overrides": overrides}
        with lock:
            old = next((r for r in rows_on_disk() if r["task"] == task), None)
        if old is not None and old.get("key") == key and not args.fresh:
            print(f"[quality] {task}: kept (measured {old.get('measured_at')})", flush=True)
            return
        run = work / f"{task}-{adapter}"
        if args.fresh and run.exists():
            import shutil

            shutil.rmtree(run)
        stamp = measured()
        print(f"[quality] {task}: training ({adapter} {' '.join(overrides)}), log {work / 'logs' / (task + '.txt')}", flush=True)
        metrics = train(task, adapter, overrides, run, work / "logs" / f"{task}.txt")
        floor = tfidf_floor(task, adapter, overrides)
        row = {"task": task, "adapter": adapter, "accuracy": round(metrics["test"]["accuracy"], 4),
               "f1_macro": round(metrics["test"]["f1_macro"], 4), **floor, "train_seconds": metrics["train_seconds"],
               "epochs": metrics["epochs_completed"], "key": key, **stamp}
        with lock:  # re-read: the other worker (or another sitting) may have added rows
            rows = [r for r in rows_on_disk() if r["task"] != task] + [row]
            rows.sort(key=lambda r: list(tasks).index(r["task"]) if r["task"] in tasks else 99)
            write_json(json_path, {"rows": rows})
            write_text(out / "quality.md", render(rows, command, args.quick))
        print(f"[quality] {task}: accuracy {row['accuracy']:.4f}, macro-F1 {row['f1_macro']:.4f}, floor {row['tfidf_f1_macro']:.4f}, "
              f"{row['train_seconds']:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(one, task) for task in (args.tasks or tasks)]:
            future.result()
    print(f"table: {out / 'quality.md'}")


if __name__ == "__main__":
    main()
