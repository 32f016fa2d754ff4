"""The seams: no import cycle between mmsft's packages, low layers import no task kind, objectives and
callbacks plug into the runner from config, and each registry finds its plug-ins lazily."""
from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmsft.pipeline import train
from mmsft.spec import build_run_config
from mmsft.training.callbacks import Callback

PACKAGE = Path(__file__).resolve().parents[1] / "mmsft"
LOW_LAYERS = ("config", "registry", "errors", "paths", "atomic", "training", "data", "metrics", "zoo")


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mmsft" else None


def _edges() -> dict[str, set[str]]:
    """Unit -> units it imports (a unit is a sub-package or a top-level module), imports inside
    functions included."""
    edges = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        base = module.split(".") if rel.name == "__init__" else module.split(".")[:-1]
        source = _unit(module)
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                anchor = base[: len(base) - (node.level - 1)] if node.level else []
                target = ".".join(anchor + ([node.module] if node.module else [])) if node.level else (node.module or "")
                targets = [target, *(f"{target}.{a.name}" for a in node.names)]
            for target in targets:
                unit = _unit(target)
                if unit and unit != source and ((PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file()):
                    edges[source].add(unit)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages():
    edges = _edges()
    assert len(edges) > 10  # the walk really saw the package
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("low", LOW_LAYERS)
def test_low_layers_import_no_task_kind_or_pipeline(low):
    reached, todo = set(), [low]
    edges = _edges()
    while todo:  # everything a low layer imports, transitively
        unit = todo.pop()
        for other in edges.get(unit, ()):
            if other not in reached:
                reached.add(other)
                todo.append(other)
    assert not reached & {"kinds", "pipeline", "spec", "cli", "dataqc", "augment", "saving", "reporting"}, sorted(reached)


# -- objectives and callbacks from config ---------------------------------------------------------
class Events(Callback):
    def __init__(self):
        self.seen = []

    def on_train_begin(self, runner, state):
        self.seen.append("begin")

    def on_step_end(self, runner, state):
        self.seen.append("step")

    def before_evaluate(self, runner, state):
        self.seen.append("before_eval")

    def on_evaluate(self, runner, state, metrics):
        self.seen.append(f"eval:{sorted(metrics)[0]}")

    def on_save(self, runner, state, path):
        self.seen.append("save")

    def on_train_end(self, runner, state):
        self.seen.append("end")


def test_callbacks_see_every_event_in_order(toy_task, isolated):
    events = Events()
    train(build_run_config(str(toy_task), "full", ["train.epochs=1", "train.eval_every_steps=3", "train.save_every_steps=2"]), isolated / "run", callbacks=[events])
    seen = events.seen
    assert seen[0] == "begin" and seen[-1] == "end" and "step" in seen and "save" in seen
    assert seen.index("before_eval") < seen.index("eval:accuracy") and seen.count("before_eval") == seen.count("eval:accuracy") >= 2


def test_ema_callback_changes_the_result_and_resumes_exactly(toy_task, isolated):
    class Crash(Exception):
        pass

    class CrashAt4(Callback):
        def on_step_end(self, runner, state):
            if state.step == 4:
                raise Crash()

    ema = ["train.callbacks=[{name: ema, decay: 0.7}]", "train.epochs=2", "train.save_every_steps=2",
           "train.early_stopping.restore_best=false"]
    plain = train(build_run_config(str(toy_task), "full", ema[1:]), isolated / "plain")
    straight = train(build_run_config(str(toy_task), "full", ema), isolated / "straight")
    with pytest.raises(Crash):
        train(build_run_config(str(toy_task), "full", ema), isolated / "resumed", callbacks=[CrashAt4()])
    resumed = train(build_run_config(str(toy_task), "full", ema), isolated / "resumed", resume=True)
    heads = [load_file(str(run / "model" / "heads.safetensors")) for run in (plain, straight, resumed)]
    assert not torch.equal(heads[0]["classification.net.1.weight"], heads[1]["classification.net.1.weight"])  # the average differs
    for key in heads[1]:
        assert torch.equal(heads[1][key], heads[2][key]), key  # the EMA state came back from the checkpoint


def test_objective_comes_from_config(toy_task, isolated):
    from dataclasses import dataclass

    from mmsft.registry import OBJECTIVES
    from mmsft.training.objectives import Objective

    @dataclass
    class ScaledOptions:
        factor: float = 1.0

    calls = []

    class Scaled(Objective):
        """The single objective times a factor (a stand-in for multi-task weighting)."""

        Options = ScaledOptions

        def loss(self, model, batch):
            calls.append(len(batch["labels"]))
            return model(**batch)["loss"] * self.options.factor, {}

    if "test_scaled" not in OBJECTIVES:
        OBJECTIVES.add("test_scaled", Scaled)
    run = train(build_run_config(str(toy_task), "full", ["train.max_steps=2", "objective={name: test_scaled, factor: 0.0}"]), isolated / "run")
    assert len(calls) == 2
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert all(r["loss"] == 0.0 for r in log)  # the runner minimised what the objective returned
    from mmsft.errors import UserError

    with pytest.raises(UserError, match="objective.factr: unknown key 'factr'"):
        build_run_config(str(toy_task), "full", ["objective={name: test_scaled, factr: 2}"])


def test_registries_import_their_plugins_lazily():
    import subprocess
    import sys

    code = ("import sys; from mmsft.registry import HEADS, KINDS; assert 'mmsft.kinds' not in sys.modules; "
            "assert {'lm', 'fcos', 'classification'} <= set(HEADS.names()); KINDS.get('detection'); "
            "assert 'mmsft.kinds' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
