"""Multi-task runs: task sampling proportions, one head per task and the backbone stored once, loss
weights scale gradients as stated, per-member evaluation and prediction, bad members."""
from __future__ import annotations

import collections
import json
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import write_toy_csv
from mmsft.cli.main import main
from mmsft.training.sampling import group_batches


def test_sampling_proportions_over_many_draws():
    sizes = [600, 150, 50]
    groups = [g for g, n in enumerate(sizes) for _ in range(n)]
    lengths = [10] * len(groups)
    counts = {mode: collections.Counter() for mode in ("proportional", "temperature", "round_robin")}
    for mode in counts:
        for epoch in range(40):
            batches = group_batches(lengths, groups, 10, seed=3, epoch=epoch, mode=mode, temperature=2.0)
            assert all(len({groups[i] for i in b}) == 1 for b in batches)  # one task per batch
            counts[mode].update(groups[b[0]] for b in batches)
    total = sum(counts["proportional"].values())
    share = {m: [counts[m][g] / total for g in range(3)] for m in counts}
    assert share["proportional"] == pytest.approx([600 / 800, 150 / 800, 50 / 800], abs=1e-9)  # each batch exactly once
    roots = [n ** 0.5 for n in sizes]
    assert share["temperature"] == pytest.approx([r / sum(roots) for r in roots], abs=0.02)  # T = 2: p ~ sqrt(n)
    assert share["round_robin"] == pytest.approx([1 / 3] * 3, abs=0.01)
    assert group_batches(lengths, groups, 10, 3, 0, "temperature") == group_batches(lengths, groups, 10, 3, 0, "temperature")


def _member(tmp_path: Path, tiny_bert: Path, name: str, words: tuple[str, str], seed: int) -> Path:
    data = tmp_path / name
    data.mkdir()
    write_toy_csv(data / "toy.csv", n=60, seed=seed)
    task = tmp_path / f"{name}.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: {name}
        kind: text_classification
        data: {{format: csv, root: {data}, files: {{all: toy.csv}}, labels: [neg, pos], split: {{train: 0.6, validation: 0.2, test: 0.2, seed: {seed}}}}}
        model: {{backbone: {tiny_bert}, max_length: 32}}
        train: {{early_stopping: {{metric: accuracy}}}}
        """))
    return task


def _multitask(tmp_path: Path, tiny_bert: Path, members: list[Path], extra: str = "") -> Path:
    path = tmp_path / "multi.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: multi
        kind: multitask
        data: {{tasks: [{', '.join(str(m) for m in members)}]}}
        model: {{backbone: {tiny_bert}}}
        objective: {{name: multitask, sampling: round_robin{extra}}}
        train: {{epochs: 2, batch_size: 8, lr: 1.0e-3, log_every_steps: 1, early_stopping: {{metric: combined}}}}
        """))
    return path


def test_multitask_run_stores_one_backbone_and_a_head_per_task(tmp_path, tiny_bert, isolated, capsys):
    members = [_member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1), _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)]
    run = tmp_path / "run"
    assert main(["train", str(_multitask(tmp_path, tiny_bert, members)), "--adapter", "lora", "--output", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert {"alpha/accuracy", "beta/accuracy", "combined"} <= set(metrics)
    assert metrics["combined"] == pytest.approx((metrics["alpha/accuracy"] + metrics["beta/accuracy"]) / 2)
    from safetensors.torch import load_file

    heads = load_file(str(run / "model" / "heads.safetensors"))
    assert {k.split(".")[0] for k in heads} == {"alpha", "beta"}
    assert list((run / "model" / "adapters").iterdir()) == [run / "model" / "adapters" / "lora"]  # the shared adapter, once
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("alpha/accuracy" in r for r in log if r["type"] == "eval")
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["combined"] == pytest.approx(metrics["combined"])
    assert main(["predict", str(run), "--task", "beta", "strong growth 3"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["task"] == "beta" and row["label"] in ("neg", "pos")
    assert main(["predict", str(run), "strong growth"]) == 2
    assert "name the member task" in capsys.readouterr().err
    assert main(["predict", str(run), "--task", "gamma", "x"]) == 2


def test_task_loss_weights_scale_the_gradients_as_stated(tmp_path, tiny_bert, isolated):
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config
    from mmsft.training.objectives import build_objective

    members = [_member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1), _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)]
    grads = {}
    for weight in (1.0, 3.0):
        cfg = build_run_config(str(_multitask(tmp_path, tiny_bert, members, f", weights: {{beta: {weight}}}")), "full")
        session = build_session(cfg)
        objective = build_objective(cfg.objective)
        objective.bind(session.prepared)
        train = session.prepared.splits["train"]
        beta = [k for k, (g, _) in enumerate(train.index) if g == 1][:4]
        batch = session.prepared.collate([train[k] for k in beta])
        session.model.eval()  # no dropout: the two passes see the same function
        loss, _ = objective.loss(session.model, batch)
        loss.backward()
        grads[weight] = session.model.heads["beta"].net[1].weight.grad.clone()
    assert torch.allclose(grads[3.0], 3 * grads[1.0], rtol=1e-4, atol=1e-7)


def test_bad_members_are_refused_before_training(tmp_path, tiny_bert, isolated, capsys):
    alpha = _member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1)
    other = tmp_path / "other.yaml"
    other.write_text(alpha.read_text().replace("name: alpha", "name: other").replace(str(tiny_bert), "minilm-l6"))
    assert main(["train", str(_multitask(tmp_path, tiny_bert, [alpha, other]))]) == 2
    err = capsys.readouterr().err
    assert "member 'other' uses backbone 'minilm-l6'" in err and "data.tasks[1]" in err
    assert main(["train", str(_multitask(tmp_path, tiny_bert, [alpha, alpha]))]) == 2
    assert "at least two distinct tasks" in capsys.readouterr().err
    multi = _multitask(tmp_path, tiny_bert, [alpha, _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)])
    assert main(["train", str(multi), "objective.name=single"]) == 2
    assert "multitask objective" in capsys.readouterr().err
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())
