"""Distillation, merging and compression benchmark: finance_sentiment and banking77_intent on MiniLM-L6,
plus sequence-level KD for translation (Gemma-3-270M -> SmolLM2-135M).

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/compress.py            # everything (hours on 2 cores)
    python benchmarks/compress.py --quick                                     # tiny budgets: checks the script end to end
    python benchmarks/compress.py --only finance_sentiment:teacher            # one stage (others reused)
    python benchmarks/compress.py --from-report benchmarks/results/compress.json --fresh --only STAGE ...
                                   # on a new machine: redo some stages, carry the rest over from the committed report

Every stage runs in its own process with one torch thread (``OMP_NUM_THREADS=1``), writes its run
folder under ``--work``/runs and its result under ``--work``/stages/<stage>.json, and is skipped when
that file exists with the same settings (``--fresh`` recomputes): an interrupted benchmark resumes
stage by stage.  ``--jobs 2`` runs independent stages side by side (one per core).

Per classification task (the shipped task defaults, adapter ``full``):
  teacher            ``mmsft train TASK --adapter full`` (full MiniLM-L6, seed 42); seed43, seed44 as soup ingredients
                     (``train.init_seed=42``: the head starts as the teacher's, only data order and dropout differ)
  student            the teacher's first 3 blocks trained on the labels alone (``mmsft distill ... alpha=0``)
  distilled          the same student with logit KD (alpha 0.5, T 2) + hidden-state KD (weight 1)
  soup               greedy soup of the 3 seeds (``mmsft merge --method greedy_soup``)
  ties               TIES of the finance and banking77 teachers' task vectors (each task's head; both tasks scored)
  pruned_heads_30    30 % of the heads by importance; pruned_layers_2: top 2 blocks dropped + 200-step re-fine-tune;
  pruned_magnitude_50 half the block weights zeroed
  int8 / int8_static int8 dynamic (backend probed) / static (calibrated) quantization of the teacher
  onnx               the teacher exported to ONNX, scored and timed in onnxruntime
Every variant is then measured in a fresh one-thread process: test accuracy, parameters (non-zero
stored numbers), weight-file size, CPU latency at batch 1 and 32 (median of repeated forward passes on
real test inputs, tokenization excluded).  Writes ``compress.{md,json,png}`` into ``--out``
(default benchmarks/results; ``--quick``: runs/bench-compress-quick).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, measured, write_json  # noqa: E402
from compress_measure import QUICK_TEST, TASKS, measure_stage  # noqa: E402

VARIANTS = ["teacher", "student", "distilled", "soup", "ties", "pruned_heads_30", "pruned_layers_2", "pruned_magnitude_50",
            "int8", "int8_static", "onnx"]
STUDENT_BLOCKS, REFIT_STEPS = 3, 200
SOUP_INIT_SEED = 42  # the teacher's seed: every soup ingredient starts from the same head
DISTILL = ["alpha=0.5", "temperature=2", "hidden_weight=1"]
QUICK_CLS = ["data.max_train_samples=96", "train.max_steps=4", "train.batch_size=16"]
QUICK_GEN = ["data.max_train_samples=8", "data.max_validation_samples=2", "data.max_test_samples=4", "train.max_steps=2",
             "train.batch_size=4", "data.generate.max_new_tokens=8"]
GEN_TASK, GEN_TEACHER, GEN_STUDENT = "translation_en_de", "gemma3-270m", "smollm2-135m"
TARGETS = {"distilled_keeps": 0.97, "distilled_latency": 0.55, "int8_points": 0.01, "int8_speedup": 1.5}


# -- stages ---------------------------------------------------------------------------------------
def stages(tasks: list[str], generation: bool) -> list[tuple[str, list[str]]]:
    """(stage name, stages it needs), in an order that respects the needs."""
    out = []
    for t in tasks:
        out += [(f"{t}:teacher", []), (f"{t}:seed43", []), (f"{t}:seed44", []),
                (f"{t}:student", [f"{t}:teacher"]), (f"{t}:distilled", [f"{t}:teacher"]),
                (f"{t}:soup", [f"{t}:teacher", f"{t}:seed43", f"{t}:seed44"])]
        out += [(f"{t}:{v}", [f"{t}:teacher"]) for v in ("pruned_heads_30", "pruned_layers_2", "pruned_magnitude_50", "int8", "int8_static", "onnx")]
    if len(tasks) > 1:
        out += [("ties", [f"{t}:teacher" for t in tasks]), ("ties_base_30", [f"{t}:teacher" for t in tasks])]
    if generation:
        out += [("gen:teacher", []), ("gen:references", []), ("gen:seq_kd", ["gen:teacher"])]
    return out


def mmsft(*args: str) -> None:
    """One mmsft command, in this stage's process (already one thread, fresh)."""
    from mmsft.cli.main import main as cli

    print("$ mmsft", " ".join(args), flush=True)
    code = cli(list(args))
    if code:
        raise SystemExit(f"mmsft {args[0]} exited {code}")


def quick_data_root(work: Path) -> Path:
    """--quick: the shared data, with BANKING77's 3,080-row test file cut to its first 300 rows."""
    from mmsft.paths import data_root

    shared, root = data_root(), work / "quick-data"
    if not (root / "banking77" / "test.csv").is_file():
        (root / "banking77").mkdir(parents=True, exist_ok=True)
        for entry in shared.iterdir():
            if entry.name != "banking77" and not (root / entry.name).exists():
                (root / entry.name).symlink_to(entry)
        for entry in (shared / "banking77").iterdir():
            if entry.name != "test.csv" and not (root / "banking77" / entry.name).exists():
                (root / "banking77" / entry.name).symlink_to(entry)
        lines = (shared / "banking77" / "test.csv").read_text(encoding="utf-8").splitlines()
        (root / "banking77" / "test.csv").write_text("\n".join(lines[:301]) + "\n", encoding="utf-8")
    return root


def run_stage(name: str, work: Path, quick: bool, gen_extra: list[str]) -> dict:
    """Produce the stage's run folder(s); returns what the report needs besides the measurement."""
    runs = work / "runs"
    cls_extra = [*QUICK_CLS, f"data.root={quick_data_root(work)}"] if quick else []
    task, _, variant = name.partition(":")
    folder = runs / name.replace(":", "-")
    tick = time.perf_counter()
    teacher = runs / f"{task}-teacher"
    record: dict = {"stage": name, "run": str(folder), **measured()}
    if task == "gen":  # before the classification variants: "gen:teacher" is not a classification teacher
        if variant in ("teacher", "references"):
            backbone = GEN_TEACHER if variant == "teacher" else GEN_STUDENT
            mmsft("train", GEN_TASK, "--adapter", "lora", f"model.backbone={backbone}", "--output", str(folder), *gen_extra)
        else:
            mmsft("distill", GEN_TASK, "--teacher", str(runs / "gen-teacher"), "--student", GEN_STUDENT, "--adapter", "lora",
                  "--output", str(folder), *gen_extra)
            record["distill"] = json.loads((folder / "distill.json").read_text())
    elif variant in ("teacher", "seed43", "seed44"):
        seed = {"teacher": 42, "seed43": 43, "seed44": 44}[variant]
        mmsft("train", task, "--adapter", "full", "--output", str(folder), f"train.seed={seed}", f"train.init_seed={SOUP_INIT_SEED}",
              *cls_extra)
    elif variant in ("student", "distilled"):
        options = ["alpha=0", "hidden_weight=0"] if variant == "student" else DISTILL
        mmsft("distill", task, "--teacher", str(teacher), "--student", f"{{from: {teacher}, layers: {STUDENT_BLOCKS}}}",
              *options, *cls_extra, "--output", str(folder))
    elif variant == "soup":
        mmsft("merge", *(str(runs / f"{task}-{s}") for s in ("teacher", "seed43", "seed44")), "--method", "greedy_soup", "--out", str(folder))
        record["merge"] = json.loads((folder / "merge.json").read_text()).get("greedy_soup")
    elif variant.startswith("pruned_") or variant in ("int8", "int8_static", "onnx"):
        args = {"pruned_heads_30": ["--prune", "heads:0.3"],
                "pruned_layers_2": ["--prune", "layers:2", "--refit-steps", str(4 if quick else REFIT_STEPS)],
                "pruned_magnitude_50": ["--prune", "magnitude:0.5"], "int8": ["--quantize", "int8_dynamic"],
                "int8_static": ["--quantize", "int8_static"], "onnx": ["--export", "onnx"]}[variant]
        mmsft("compress", str(teacher), *args, "--threads", "1", "--out", str(folder))
        record["compress"] = json.loads((folder / "compress.json").read_text())
    elif name in ("ties", "ties_base_30"):
        teachers = [str(runs / f"{t}-teacher") for t in TASKS]
        extra = ["--with-base", "0.3"] if name == "ties_base_30" else []
        mmsft("merge", *teachers, "--method", "ties", "--density", "0.2", *extra, "--out", str(folder))
    else:
        raise SystemExit(f"unknown stage {name}")
    record["wall_seconds"] = round(time.perf_counter() - tick, 1)
    return record


# -- report ---------------------------------------------------------------------------------------
def rows_of(stage_results: dict, tasks: list[str]) -> list[dict]:
    rows = []
    for t in tasks:
        for v in VARIANTS:
            key = f"{t}:{v}" if v != "ties" else "ties"
            m = (stage_results.get(key) or {}).get("measure", {})
            m = m.get(t, m) if v == "ties" else m
            if "accuracy" in m:
                rows.append({"task": t, "variant": v, **{k: m[k] for k in ("accuracy", "params", "size_mb", "latency_b1_ms", "latency_b32_ms", "threads")}})
    return rows


def checks(rows: list[dict], ingredient_accuracy: dict | None = None) -> list[str]:
    get = {(r["task"], r["variant"]): r for r in rows}
    lines = []
    for t in TASKS:
        teacher = get.get((t, "teacher"))
        if not teacher:
            continue
        d = get.get((t, "distilled"))
        if d:
            keep, lat = d["accuracy"] / teacher["accuracy"], d["latency_b32_ms"] / teacher["latency_b32_ms"]
            ok = keep >= TARGETS["distilled_keeps"] and lat <= TARGETS["distilled_latency"]
            lines.append(f"- {t}: distilled {STUDENT_BLOCKS}-block student keeps {100 * keep:.1f}% of the teacher's accuracy (target ≥ 97%) "
                         f"at {100 * lat:.0f}% of its batch-32 latency (target ≤ 55%) {'✅' if ok else '❌'}")
        q = get.get((t, "int8"))
        if q:
            drop, speed = teacher["accuracy"] - q["accuracy"], teacher["latency_b32_ms"] / q["latency_b32_ms"]
            ok = drop <= TARGETS["int8_points"] and speed >= TARGETS["int8_speedup"]
            lines.append(f"- {t}: int8 dynamic changes accuracy by {-100 * drop:+.2f} points (target within 1) at {speed:.2f}x the fp32 "
                         f"batch-32 throughput (target ≥ 1.5x) {'✅' if ok else '❌'}")
        s = get.get((t, "soup"))
        ingredients = [a for a in (ingredient_accuracy or {}).get(t, []) if a is not None]
        if s and ingredients:
            ok = s["accuracy"] >= max(ingredients)
            lines.append(f"- {t}: greedy soup test accuracy {s['accuracy']:.4f} vs its best ingredient {max(ingredients):.4f} "
                         f"(ingredients {', '.join(f'{a:.4f}' for a in ingredients)}; target: not worse) {'✅' if ok else '❌'}")
    return lines


def carry_stages(report: Path, names: list[str], stage_path, settings: dict) -> list[str]:
    """``--from-report``: write the committed report's records of ``names`` whose stage file is missing, marked
    ``carried`` (they count as done under today's settings; their run folders are not here, so they are never
    re-measured).  Returns the stages seeded."""
    committed = json.loads(report.read_text()).get("stages", {})
    seeded = []
    for n in names:
        if n in committed and not stage_path(n).is_file():
            write_json(stage_path(n), {**committed[n], "settings": settings, "carried": str(report)})
            seeded.append(n)
    return seeded


def carried_line(results: dict) -> list[str]:
    carried = {n: r for n, r in results.items() if isinstance(r, dict) and r.get("carried")}
    if not carried:
        return []
    when = sorted({(r.get("remeasured") or r)["measured_at"] for r in carried.values()})
    return [f"Carried over from an earlier report (`--from-report`, measured {when[0]} to {when[-1]}, not re-run here): "
            + ", ".join(f"`{n}`" for n in carried) + ". Compare their latencies with the others' with care.", ""]


def sitting_line(results: dict) -> list[str]:
    """When the measurements ran: one sitting (``--remeasure``) or each right after its stage's training."""
    results = {n: r for n, r in results.items() if not (isinstance(r, dict) and r.get("carried"))}
    timed = [r for n, r in results.items() if isinstance(r, dict) and "measure" in r and not n.startswith("gen:")]
    stamps = [r["remeasured"] for r in timed if r.get("remeasured")]
    first = [r for r in timed if not r.get("remeasured")]
    if stamps and not first:
        loads = [s["load_before"] for s in stamps]
        return [f"Measured in one sitting (`--remeasure`), {min(s['measured_at'] for s in stamps)} to {max(s['measured_at'] for s in stamps)}, "
                f"1-minute load average {min(loads):.2f}-{max(loads):.2f} before each variant.", ""]
    return ["Each variant was measured right after its stage trained (loads differ from variant to variant: "
            "compare latencies with care, or rerun with `--remeasure`).", ""]


def render(results: dict, rows: list[dict], command: str, quick: bool, tasks: list[str]) -> str:
    lines = header("Distillation, merging and compression benchmark", command)
    if quick:
        lines += [f"**QUICK SMOKE RUN** (tiny training budgets, BANKING77 test cut to 300 rows, measured on the first {QUICK_TEST} "
                  "test samples, 10 / 5 timing repeats): the figures mean nothing.", ""]
    lines += ["Each variant is measured in a fresh process with one torch / onnxruntime thread: accuracy on the task's test split,",
              "parameters = non-zero numbers stored in the weight files, size = bytes of the weight files (tokenizer excluded),",
              "latency = median of repeated forward passes of the composed model on real test inputs (batch 1: 50 single samples;",
              "batch 32: the first 32 test samples, 15 runs; tokenization excluded).", "", *sitting_line(results), *carried_line(results),
              "| task | variant | test accuracy | params | size MB | latency b1 ms | latency b32 ms | threads |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['variant']} | {r['accuracy']:.4f} | {r['params']:,} | {r['size_mb']:.1f} | {r['latency_b1_ms']:.2f} | "
                     f"{r['latency_b32_ms']:.1f} | {r['threads']} |")
    ingredients = {t: [(results.get(f"{t}:{s}") or {}).get("measure", {}).get("accuracy") for s in ("teacher", "seed43", "seed44")] for t in tasks}
    lines += ["", "## Checks against the targets", "", *checks(rows, ingredients), ""]
    for t in tasks:
        soup = (results.get(f"{t}:soup") or {}).get("merge")
        if soup:
            lines += [f"### Greedy soup, {t}", "", f"Validation {soup['metric']}: ingredients " +
                      ", ".join(f"{Path(k).name} {v:.4f}" for k, v in soup["ingredients_validation"].items()) +
                      f"; kept {', '.join(Path(k).name for k in soup['kept'])} (soup validation {soup['soup_validation']:.4f}).", ""]
        quant = ((results.get(f"{t}:int8") or {}).get("compress") or {}).get("quantize")
        if quant:
            lines += [f"- {t} int8 dynamic backend: **{quant['backend']}** ({quant['reason']}; probe ms {quant['timings_ms']})"]
    forget = [(n, results.get(n, {}).get("measure")) for n in ("ties", "ties_base_30")]
    if any(m for _, m in forget):
        lines += ["", "## Forgetting: TIES of the two teachers, and moved toward the base", "",
                  "| merge | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for n, m in forget:
            if m:
                lines.append(f"| {n} | " + " | ".join(f"{m.get(t, {}).get('accuracy', float('nan')):.4f}" for t in tasks) + " |")
        lines.append("")
    gen = results.get("generation") or []
    if gen:
        lines += ["## Sequence-level KD for translation (same budget: one LoRA epoch over the same training prompts)", "",
                  "| variant | model | BLEU | chrF | EOS rate | train s | teacher decoding s |", "|---|---|---|---|---|---|---|"]
        for g in gen:
            lines.append(f"| {g['variant']} | {g['model']} | {g['bleu']:.2f} | {g['chrf']:.2f} | {g.get('eos_rate') or 0:.3f} | "
                         f"{g.get('train_seconds') or 0:.0f} | {g.get('teacher_decode_seconds') or '-'} |")
        lines.append("")
    lines += ["![size vs accuracy](compress.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len({r["task"] for r in rows}) or 1, figsize=(11, 4.2), squeeze=False)
    for ax, task in zip(axes[0], sorted({r["task"] for r in rows})):
        for r in [r for r in rows if r["task"] == task]:
            ax.scatter(r["size_mb"], r["accuracy"], s=20 + r["latency_b32_ms"] / 5)
            ax.annotate(r["variant"], (r["size_mb"], r["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("weight files (MB)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{task} (marker size ~ batch-32 latency)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- driver -----------------------------------------------------------------------------------------
def child(stage: str, work: Path, quick: bool, gen_extra: list[str]) -> None:
    record = run_stage(stage, work, quick, gen_extra)
    record["measure"] = measure_stage(stage, Path(record["run"]), quick)
    write_json(work / "stages" / f"{stage.replace(':', '-')}.json", record)


def remeasure_child(stage: str, work: Path, quick: bool) -> None:
    """``--remeasure``: this stage's measurement again (its run folder kept), stamped with when and under what load."""
    path = work / "stages" / f"{stage.replace(':', '-')}.json"
    record = json.loads(path.read_text())
    record["measure"] = measure_stage(stage, Path(record["run"]), quick)
    record["remeasured"] = measured()
    write_json(path, record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--no-generation", action="store_true", help="skip the translation sequence-KD stages")
    ap.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (their needs must be done)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="independent stages side by side (one thread each)")
    ap.add_argument("--fresh", action="store_true", help="recompute the planned stages (with --only: those) even where saved")
    ap.add_argument("--work", type=Path, help="run folders and stage results (default runs/bench-compress[-quick])")
    ap.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: runs/bench-compress-quick)")
    ap.add_argument("--from-report", type=Path, metavar="JSON",
                    help="seed missing stage results from a committed compress.json (new machine: redo only what --only names)")
    ap.add_argument("--remeasure", action="store_true",
                    help="after the stages, measure every finished classification stage again, one fresh process each, in one sitting "
                         "(latency ratios then come from one load; a stage's first measurement ran right after its training)")
    ap.add_argument("--stage-child", metavar="STAGE", help=argparse.SUPPRESS)
    ap.add_argument("--measure-child", metavar="STAGE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = (args.work or Path("runs") / ("bench-compress-quick" if args.quick else "bench-compress")).resolve()
    out = args.out or (Path("runs/bench-compress-quick") if args.quick else RESULTS)
    from generation import native_bf16

    bf16 = ["train.mixed_precision=bf16"] if native_bf16() else []
    gen_extra = [*(QUICK_GEN if args.quick else []), *bf16]
    if args.stage_child:
        child(args.stage_child, work, args.quick, gen_extra)
        return
    if args.measure_child:
        remeasure_child(args.measure_child, work, args.quick)
        return
    plan = stages(args.tasks, not args.no_generation)
    if args.only:
        known = {n for n, _ in plan}
        unknown = [s for s in args.only if s not in known]
        if unknown:
            raise SystemExit(f"unknown stage(s) {unknown}; stages: {', '.join(sorted(known))}")
        plan = [(n, needs) for n, needs in plan if n in args.only]
    settings = {"quick": args.quick, "gen_extra": gen_extra, "cls_extra": QUICK_CLS if args.quick else [], "distill": DISTILL,
                "student_blocks": STUDENT_BLOCKS, "refit_steps": REFIT_STEPS,
                "soup_init_seed": SOUP_INIT_SEED}  # a saved stage is reused only under the same settings
    path = lambda n: work / "stages" / f"{n.replace(':', '-')}.json"  # noqa: E731
    planned = {n for n, _ in plan}
    if args.from_report:  # every stage but those --only names to redo
        names = [n for n, _ in stages(args.tasks, True) if not (args.only and n in planned)]
        print(f"carried over from {args.from_report}: {', '.join(carry_stages(args.from_report, names, path, settings)) or 'nothing'}")
    done = {n for n, _ in stages(args.tasks, True) if path(n).is_file() and not (args.fresh and n in planned)
            and json.loads(path(n).read_text()).get("settings") == settings}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    running: dict[str, subprocess.Popen] = {}
    todo = [(n, needs) for n, needs in plan if n not in done]
    while todo or running:
        for n, proc in list(running.items()):
            if proc.poll() is not None:
                del running[n]
                if proc.returncode:
                    raise SystemExit(f"stage {n} failed (exit {proc.returncode}); rerun to resume from it")
                record = json.loads(path(n).read_text())
                record["settings"] = settings
                write_json(path(n), record)
                done.add(n)
        ready = [(n, needs) for n, needs in todo if all(d in done for d in needs)]
        while ready and len(running) < max(1, args.jobs):
            n, _ = ready.pop(0)
            todo.remove((n, _))
            stale = work / "runs" / n.replace(":", "-")
            if stale.exists():  # a stage killed half-way is redone from its start
                import shutil

                shutil.rmtree(stale)
            cmd = [sys.executable, __file__, "--stage-child", n, "--work", str(work), *(["--quick"] if args.quick else [])]
            print("$", " ".join(cmd), flush=True)
            running[n] = subprocess.Popen(cmd, env=env)
        if todo and not ready and not running:
            raise SystemExit(f"stages {[n for n, _ in todo]} wait for stages that are not done")
        time.sleep(1)
    if args.remeasure:
        for n, _ in stages(args.tasks, False):
            if path(n).is_file() and not json.loads(path(n).read_text()).get("carried"):
                cmd = [sys.executable, __file__, "--measure-child", n, "--work", str(work), *(["--quick"] if args.quick else [])]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, env=env, check=True)
    results = {n: json.loads(path(n).read_text()) for n, _ in stages(args.tasks, True) if path(n).is_file()}
    rows = rows_of(results, args.tasks)
    generation = []
    for variant, model in (("teacher", GEN_TEACHER), ("references", GEN_STUDENT), ("seq_kd", GEN_STUDENT)):
        r = results.get(f"gen:{variant}")
        if r:
            decode = ((r.get("distill") or {}).get("teacher_decode") or {}).get("seconds")
            generation.append({"task": GEN_TASK, "variant": variant, "model": model, **r["measure"], "teacher_decode_seconds": decode})
    results["generation"] = generation
    command = command_line("compress.py")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compress.json", {"rows": rows, "generation": generation, "quick": args.quick,
                                       "stages": {n: {k: v for k, v in r.items() if k not in ("compress",)} for n, r in results.items() if n != "generation"}})
    (out / "compress.md").write_text(render(results, rows, command.strip(), args.quick, args.tasks))
    if rows:
        plot(rows, out / "compress.png")
    print((out / "compress.md").resolve())


if __name__ == "__main__":
    main()
