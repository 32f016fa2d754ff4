"""Kill training anywhere, resume, get the same model: SIGKILL trials for three task kinds.

    python benchmarks/faults.py                                  # 10 trials per kind, all three kinds
    python benchmarks/faults.py --kinds text_classification --trials 3

For each kind a tiny real task (MiniLM-L6 + LoRA on 100 Financial PhraseBank sentences; SmolLM2-135M
+ LoRA on 40 Multi30K en-de pairs; MobileNetV2 + FCOS on 8
Vehicles-OpenImages images (8 epochs), each copied under a temporary folder) is trained three ways:

1. the reference: `mmsft train TASK --output ref`, uninterrupted;
2. a probe: the same with ``MMSFT_FAULT_TRACE`` set, which lists every fault point the run passes
   (``mmsft.faults``: training micro-batches, module calls during evaluation, every atomic write,
   folder install and removal, the start of the final save);
3. the trials: each picks one of those points at random in its class (``step``: a micro-batch after
   its forward or backward pass or after the optimizer update; ``checkpoint``: a file, folder install
   or removal of a checkpoint save; ``eval``: a module call inside a validation pass; ``final_save``:
   a write, install or removal after training ended: model/, report, metrics.json, checkpoint
   clean-up), trains with ``MMSFT_FAULT`` set so that the process SIGKILLs itself exactly there, checks
   that it died by SIGKILL at that point (the line it wrote to ``MMSFT_FAULT_LOG`` just before), checks
   the state it left (unfinished: `mmsft eval` exits 2 saying training did not finish; finished: the
   model is already the reference's), resumes with `mmsft train --resume RUN`, and compares the final
   model's every safetensors tensor (bitwise) and metrics.json's test metrics with the reference.

Writes ``faults.md`` and ``faults.json`` (``{"trials": [{kind, kill_point, identical_weights,
identical_metrics, ...}]}``) into ``--results``; exits 1 if a trial differs.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, header, write_json  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
KILL_POINTS = ("step", "checkpoint", "eval", "final_save")
WRITE_POINTS = ("write", "folder", "folder.swap", "remove")
TEMP_NAME = re.compile(r"/\.([^/]+)\.[0-9a-z_]+\.(tmp|old)(?=/|$)")  # atomic's random temporary names


# -- the tiny real tasks --------------------------------------------------------------------------------
def _data_root() -> Path:
    from mmsft.paths import data_root

    return data_root()


def finance_task(root: Path, backbone: str = "minilm-l6", adapter: str = "lora") -> Path:
    """100 Financial PhraseBank sentences (every 48th line, all three labels), 60/20/20."""
    lines = (_data_root() / "financial_phrasebank" / "Sentences_50Agree.txt").read_bytes().decode("latin-1").splitlines()
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "finance100.txt").write_text("\n".join(lines[::48][:100]) + "\n", encoding="utf-8")
    return _yaml(root / "finance_tiny.yaml", f"""\
        name: finance_tiny
        kind: text_classification
        adapter: {adapter}
        data:
          format: phrasebank
          root: {data}
          files: {{all: finance100.txt}}
          labels: [negative, neutral, positive]
          split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 42}}
        model: {{backbone: {backbone}, max_length: 64}}
        metrics: [accuracy, f1_macro]
        train: {{epochs: 2, batch_size: 8, eval_batch_size: 32, save_every_steps: 3, eval_every_steps: 5, log_every_steps: 2,
                 threads: 1, early_stopping: {{metric: accuracy}}}}
        """)


def translation_task(root: Path) -> Path:
    """40 / 8 / 8 real Multi30K en-de pairs, SmolLM2-135M + LoRA."""
    src = _data_root() / "multi30k" / "raw"
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, name, n in (("train", "train", 40), ("val", "val", 8), ("test", "test_2016_flickr", 8)):
        for lang in ("en", "de"):
            lines = (src / f"{name}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _yaml(root / "mt_tiny.yaml", f"""\
        name: mt_tiny
        kind: generation
        adapter: lora
        data:
          format: parallel
          root: {data}
          files: {{train: "train.{{lang}}", validation: "val.{{lang}}", test: "test.{{lang}}"}}
          prompt: "Translate {{source_language}} to {{target_language}}: {{source}}"
          generate: {{max_new_tokens: 12, batch_size: 4}}
        model: {{backbone: smollm2-135m, max_length: 160}}
        metrics: [bleu, chrf, exact_match, eos_rate]
        train: {{epochs: 2, batch_size: 4, eval_batch_size: 4, lr: 1.0e-3, save_every_steps: 4, eval_every_steps: 7,
                 log_every_steps: 2, threads: 1}}
        """)


def detection_task(root: Path) -> Path:
    """8 train / 3 valid / 3 test Vehicles-OpenImages images (YOLO), MobileNetV2 + FCOS at 128 px."""
    src = _data_root() / "vehicles_openimages"
    data = root / "vehicles"
    for split, n in (("train", 8), ("valid", 3), ("test", 3)):
        for sub in ("images", "labels"):
            (data / split / sub).mkdir(parents=True, exist_ok=True)
        for image in sorted((src / split / "images").glob("*.jpg"))[:n]:
            shutil.copy(image, data / split / "images" / image.name)
            shutil.copy(src / split / "labels" / f"{image.stem}.txt", data / split / "labels" / f"{image.stem}.txt")
    shutil.copy(src / "data.yaml", data / "data.yaml")
    return _yaml(root / "det_tiny.yaml", f"""\
        name: det_tiny
        kind: detection
        adapter: detector_top3
        data:
          source: {data / 'data.yaml'}
          splits: {{train: train, validation: valid, test: test}}
          format: yolo
          image_size: 128
        model:
          backbone: mobilenet-v2
          heads: {{detection: {{type: fcos, options: {{strides: [16, 32], neck: fpn, channels: 32, head_convs: 1}}}}}}
        metrics: [detection_map]
        train: {{epochs: 8, batch_size: 2, eval_batch_size: 4, save_every_steps: 5, eval_every_steps: 6, log_every_steps: 2,
                 threads: 1, max_grad_norm: 10.0}}
        """)


TASKS = {"text_classification": finance_task, "generation": translation_task, "detection": detection_task}


def _yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# -- running mmsft ---------------------------------------------------------------------------------------
def environment(work: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSFT_FAULT")}
    env.update(MMSFT_CACHE=str(work / "cache"), MMSFT_RUNS_DIR=str(work / "runs"), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(PROJECT), **extra)
    return env


def mmsft(args: list, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mmsft", *map(str, args)], env=env, cwd=PROJECT, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"mmsft {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def eval_refuses(run: Path, env: dict) -> tuple[bool, str]:
    """Whether `mmsft eval RUN` exits 2 saying training did not finish, and the line it printed."""
    proc = mmsft(["eval", run], env, check=False)
    said = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return proc.returncode == 2 and "did not finish" in said, said[-300:]


# -- what to compare ---------------------------------------------------------------------------------------
def model_tensors(run: Path) -> dict:
    """Every tensor of every safetensors file under ``run/model`` ("file/key" -> tensor)."""
    from safetensors.torch import load_file

    out = {}
    for path in sorted((run / "model").rglob("*.safetensors")):
        rel = path.relative_to(run / "model").as_posix()
        out.update({f"{rel}/{k}": v for k, v in load_file(str(path)).items()})
    return out


def same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)


def test_metrics(run: Path):
    path = run / "metrics.json"
    return json.loads(path.read_text())["test"] if path.is_file() else None


# -- fault points ----------------------------------------------------------------------------------------
def as_glob(path: str, run: Path) -> str:
    """A traced path as a pattern that matches the same place in another run folder (random temp names)."""
    text = path.replace(str(run), "*") if str(run) in path else path
    return TEMP_NAME.sub(lambda m: f"/.{m.group(1)}.*.{m.group(2)}", text)


def candidates(trace: Path, run: Path) -> dict[str, list[dict]]:
    """Kill point class -> every traced event of that class, each with the MMSFT_FAULT that dies there."""
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    final_at = next((i for i, e in enumerate(events) if e["point"] == "final"), len(events))
    out: dict[str, list[dict]] = {k: [] for k in KILL_POINTS}
    seen: dict[tuple, int] = {}
    for i, event in enumerate(events):
        glob = as_glob(event["path"], run)
        if event["point"] in WRITE_POINTS and not glob.startswith("*"):
            continue  # outside the run folder (caches): not deterministic between runs
        key = (event["point"], glob)
        seen[key] = seen.get(key, 0) + 1
        fault = f"{event['point']}:{seen[key]}:{glob}"
        if event["point"] == "step":
            out["step"].append({**event, "fault": fault})
        elif event["point"] == "eval":
            out["eval"].append({**event, "fault": fault})
        elif event["point"] in WRITE_POINTS:
            kind = "final_save" if i > final_at else "checkpoint" if "/checkpoints" in glob else None
            if kind:
                out[kind].append({**event, "fault": fault})
    return out


def plan(n: int) -> list[str]:
    """Kill point classes for ``n`` trials: round robin, so 10 trials are 3/3/2/2."""
    return [KILL_POINTS[i % len(KILL_POINTS)] for i in range(n)]


# -- one kind ----------------------------------------------------------------------------------------------
def run_kind(kind: str, task: Path, work: Path, trials: int, rng: random.Random, log=print,
             points: list[str] | None = None, separate_reference: bool = True) -> list[dict]:
    """Reference, probe and ``trials`` kill / resume trials of one task (kill point classes: ``points``,
    default round robin over ``KILL_POINTS``).  ``separate_reference=False`` (the test suite's short
    version) takes the probe as the reference: one run less, no check that two runs agree."""
    env = environment(work)
    ref, probe = work / "ref", work / "probe"
    tick = time.perf_counter()
    if separate_reference:  # first, with a cold cache (zoo conversion, Arrow caches): it must not matter
        mmsft(["train", task, "--output", ref], env)
        log(f"[{kind}] reference run: {time.perf_counter() - tick:.0f} s")
    mmsft(["train", task, "--output", probe], environment(work, MMSFT_FAULT_TRACE=str(work / "trace.jsonl")))
    ref = ref if separate_reference else probe
    expected_weights, expected_metrics = model_tensors(ref), test_metrics(ref)
    if not same_tensors(expected_weights, model_tensors(probe)) or test_metrics(probe) != expected_metrics:
        raise RuntimeError(f"{kind}: two uninterrupted runs differ: training is not deterministic, trials would prove nothing")
    pool = candidates(work / "trace.jsonl", probe)
    results = []
    for i, kill_point in enumerate(points or plan(trials)):
        if not pool[kill_point]:
            raise RuntimeError(f"{kind}: the probe run passed no '{kill_point}' point")
        event = rng.choice(pool[kill_point])
        results.append(trial(kind, kill_point, event, task, work / f"trial-{i:02d}", work, expected_weights, expected_metrics))
        r = results[-1]
        log(f"[{kind}] trial {i + 1}/{len(points or plan(trials))}: {kill_point} at {r['at']} -> {r['state_after_kill']}; "
            f"weights {'same' if r['identical_weights'] else 'DIFFER'}, metrics {'same' if r['identical_metrics'] else 'DIFFER'} "
            f"({r['seconds']:.0f} s)")
    return results


def trial(kind: str, kill_point: str, event: dict, task: Path, run: Path, work: Path, expected_weights, expected_metrics) -> dict:
    tick = time.perf_counter()
    log_file = run.with_suffix(".kill.jsonl")
    killed = mmsft(["train", task, "--output", run],
                   environment(work, MMSFT_FAULT=event["fault"], MMSFT_FAULT_LOG=str(log_file)), check=False)
    landed = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.is_file() else []
    died_there = killed.returncode == -signal.SIGKILL and len(landed) == 1 and \
        fnmatch.fnmatchcase(landed[0]["path"], event["fault"].split(":", 2)[2]) and landed[0]["killed"] == event["point"]
    if not run.is_dir():  # died (or failed) before its run folder existed: nothing to resume
        return {"kind": kind, "kill_point": kill_point, "at": event["fault"], "died_by_sigkill_there": died_there,
                "state_after_kill": "none", "identical_weights": False, "identical_metrics": False, "leftovers": [],
                "seconds": round(time.perf_counter() - tick, 1),
                "note": f"exit {killed.returncode}, no run folder; kill log {landed}; stderr tail: {killed.stderr[-1500:]}"}
    finished = (run / "metrics.json").is_file()
    _, n, glob = event["fault"].split(":", 2)
    record = {"kind": kind, "kill_point": kill_point, "at": f"{event['point']} #{n} {glob}", "fault": event["fault"],
              "died_by_sigkill_there": died_there, "state_after_kill": "finished" if finished else "unfinished"}
    if finished:  # the new state: the model must already be the reference's
        record["finished_model_identical"] = same_tensors(expected_weights, model_tensors(run))
    else:  # the old state: eval must refuse it
        record["eval_refused_unfinished"], record["eval_said"] = eval_refuses(run, environment(work))
    resumed = mmsft(["train", "--resume", run, task], environment(work), check=False)
    record["resume_exit_code"] = resumed.returncode
    record["identical_weights"] = resumed.returncode == 0 and same_tensors(expected_weights, model_tensors(run))
    record["identical_metrics"] = resumed.returncode == 0 and test_metrics(run) == expected_metrics
    record["leftovers"] = sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name == "checkpoints")
    record["seconds"] = round(time.perf_counter() - tick, 1)
    if not died_there:
        record["note"] = f"exit {killed.returncode}; kill log {landed}; stderr tail: {killed.stderr[-1500:]}"
    if resumed.returncode != 0:
        record["note"] = f"resume exited {resumed.returncode}: {resumed.stderr[-500:]}"
    return record


def ok(r: dict) -> bool:
    return (r["died_by_sigkill_there"] and r["identical_weights"] and r["identical_metrics"] and not r["leftovers"]
            and r.get("finished_model_identical", True) and r.get("eval_refused_unfinished", True))


# -- report ------------------------------------------------------------------------------------------------
def write_report(results: list[dict], out: Path, command: str, seconds: float, trials: int) -> None:
    write_json(out / "faults.json", {"command": command, "seconds": round(seconds), "trials": results})
    lines = header("Fault injection: SIGKILL anywhere, resume, same model", command)
    lines += [
        "Each trial trains a tiny real task with `MMSFT_FAULT` set so that the process SIGKILLs itself at one randomly",
        "chosen point of its class (see `mmsft/faults.py`; the point is picked from a traced probe run), checks it died",
        "there, checks the state it left, resumes with `mmsft train --resume RUN`, and compares with an uninterrupted run:",
        "every tensor of every safetensors file in `model/` bitwise, and the test metrics in `metrics.json` exactly.",
        "Tasks: MiniLM-L6 + LoRA on 100 Financial PhraseBank sentences; SmolLM2-135M + LoRA on",
        "40 Multi30K en-de pairs; MobileNetV2 + FCOS (detector_top3) on 8 Vehicles-OpenImages images at 128 px; one thread.",
        "",
        "| kind | kill point | where it died | after the kill | eval on it | weights | test metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        after = r["state_after_kill"]
        check = ("refused (did not finish)" if r.get("eval_refused_unfinished") else "NOT refused") if after == "unfinished" else \
            ("model = reference" if r.get("finished_model_identical") else "model DIFFERS")
        lines.append(f"| {r['kind']} | {r['kill_point']} | `{r['at']}`{'' if r['died_by_sigkill_there'] else ' (NOT landed)'} | "
                     f"{after} | {check} | {'identical' if r['identical_weights'] else 'DIFFER'} | "
                     f"{'identical' if r['identical_metrics'] else 'DIFFER'} |")
    good = sum(ok(r) for r in results)
    lines += ["", f"**{good} of {len(results)} trials identical** ({trials} per kind; {seconds / 60:.1f} min in all). "
              "A kill in the final save left the run either unfinished (eval refuses it, resume redoes the save) or finished "
              "(its model already the reference's); no trial left a temporary file, a checkpoint or a lock behind after the resume."
              if good == len(results) else f"**{len(results) - good} trial(s) failed**: see faults.json."]
    (out / "faults.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--trials", type=int, default=10, help="trials per kind")
    ap.add_argument("--seed", type=int, default=0, help="picks the kill points")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = ap.parse_args()
    command = command_line("faults.py")
    rng, tick, results = random.Random(args.seed), time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="mmsft-faults-") as tmp:
        base = args.work or Path(tmp)
        for kind in args.kinds:
            work = base / kind
            work.mkdir(parents=True, exist_ok=True)
            results += run_kind(kind, TASKS[kind](work), work, args.trials, rng)
    write_report(results, args.results, command, time.perf_counter() - tick, args.trials)
    print(f"{sum(ok(r) for r in results)} of {len(results)} trials identical; {args.results / 'faults.md'}")
    return 0 if all(ok(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
