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


def test_passes_spread_a_tasks_budget_over_the_run():
    sizes = [300, 100]  # 30 and 10 batches of 10
    groups = [g for g, n in enumerate(sizes) for _ in range(n)]
    lengths = [(7 * i) % 23 + 1 for i in range(len(groups))]
    epochs, seen = 6, collections.Counter()
    per_epoch = []
    for epoch in range(epochs):
        batches = group_batches(lengths, groups, 10, seed=5, epoch=epoch, shares={1: 3 / epochs})
        per_epoch.append(sum(groups[b[0]] == 1 for b in batches))
        seen.update(i for b in batches for i in b)
    assert per_epoch == [5] * epochs  # half of group 1's batches every epoch: 3 passes in 6 epochs
    assert {seen[i] for i in range(300)} == {6} and {seen[i] for i in range(300, 400)} == {3}  # every sample, evenly
    plain = group_batches(lengths, groups, 10, seed=5, epoch=2)
    shared = group_batches(lengths, groups, 10, seed=5, epoch=2, shares={1: 0.5})
    assert sorted(b for b in plain if groups[b[0]] == 0) == sorted(b for b in shared if groups[b[0]] == 0)  # group 0 untouched


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
    assert main(["train", str(multi), "objective.sampling=proportional", "objective.passes={alpah: 2}"]) == 2
    assert "passes name tasks ['alpah']" in capsys.readouterr().err
    assert main(["train", str(multi), "objective.passes={alpha: 2}"]) == 2  # the schedule here is round_robin
    assert "passes apply to proportional sampling" in capsys.readouterr().err
    assert main(["train", str(multi), "objective.sampling=proportional", "objective.passes={alpha: 0}"]) == 2
    assert "passes must be > 0" in capsys.readouterr().err
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


_TASK_ADAPTERS = """
adapters:
  shared: {method: lora, options: {r: 4}}
  alpha_only: {method: lora, task: alpha, options: {r: 2}}
"""


def test_task_specific_adapters_serve_only_their_task(tmp_path, tiny_bert, isolated, capsys):
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config
    from mmsft.training.objectives import build_objective

    members = [_member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1), _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)]
    multi = _multitask(tmp_path, tiny_bert, members)
    multi.write_text(multi.read_text() + _TASK_ADAPTERS)
    # gradients: a beta batch reaches the shared adapter only, an alpha batch both
    session = build_session(build_run_config(str(multi), None))
    objective = build_objective(session.cfg.objective)
    objective.bind(session.prepared)
    train = session.prepared.splits["train"]
    lora = {name: [p for n, p in session.model.backbone.named_parameters() if f".{name}." in n] for name in ("shared", "alpha_only")}
    assert all(lora.values()) and all(p.requires_grad for ps in lora.values() for p in ps)
    reached = {}
    for group, task in enumerate(("alpha", "beta")):
        batch = session.prepared.collate([train[k] for k, (g, _) in enumerate(train.index) if g == group][:4])
        session.model.zero_grad(set_to_none=True)
        objective.loss(session.model, batch)[0].backward()
        reached[task] = {name: any(p.grad is not None for p in ps) for name, ps in lora.items()}
        assert all(p.requires_grad for ps in lora.values() for p in ps)  # routing leaves what trains alone
    assert reached == {"alpha": {"shared": True, "alpha_only": True}, "beta": {"shared": True, "alpha_only": False}}
    # a trained run: both adapters stored, each once; eval reloads and routes to the same figures
    run = tmp_path / "run"
    assert main(["train", str(multi), "--output", str(run)]) == 0
    assert sorted(p.name for p in (run / "model" / "adapters").iterdir()) == ["alpha_only", "shared"]
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["combined"] == pytest.approx(metrics["combined"])
    from mmsft.pipeline import load_run

    model = load_run(run).model.eval()
    batch = session.prepared.collate([train[0]])
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        model.use_task("alpha")
        with_alpha = model.features(batch).tokens
        model.use_task("beta")
        without = model.features(batch).tokens
    assert not torch.allclose(with_alpha, without)  # alpha's trained adapter changes alpha's features only
    assert main(["merge-adapters", str(run), "--out", str(tmp_path / "merged")]) == 2
    assert "serve one task each" in capsys.readouterr().err


def test_task_specific_adapters_are_checked(tmp_path, tiny_bert, isolated, capsys):
    members = [_member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1), _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)]
    multi = _multitask(tmp_path, tiny_bert, members)
    multi.write_text(multi.read_text() + _TASK_ADAPTERS)
    assert main(["train", str(multi), "adapters.alpha_only.task=alpah"]) == 2
    assert "not a member. Did you mean 'alpha'?" in capsys.readouterr().err
    assert main(["train", str(multi), "adapters.alpha_only.method=frozen", "adapters.alpha_only.options={}"]) == 2
    assert "cannot be switched" in capsys.readouterr().err
    assert main(["train", str(members[0]), "--adapter", "lora", "adapters.lora.task=alpha"]) == 2
    assert "adapters.lora.task" in capsys.readouterr().err
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())


def test_per_task_stopping_restores_each_tasks_head_and_own_adapter(tmp_path, tiny_bert, isolated):
    """A task whose metric stops improving gets back its head and its own adapter from its best
    evaluation; the shared adapter keeps its last weights; sampling of a stopped task ends; the state
    travels through a checkpoint."""
    import types

    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config
    from mmsft.training.multitask import PerTaskStopping
    from mmsft.training.objectives import build_objective

    members = [_member(tmp_path, tiny_bert, "alpha", ("good", "bad"), 1), _member(tmp_path, tiny_bert, "beta", ("up", "down"), 2)]
    multi = _multitask(tmp_path, tiny_bert, members, ", stopping: per_task, patience: 1")
    multi.write_text(multi.read_text().replace("sampling: round_robin", "sampling: proportional") + _TASK_ADAPTERS)
    session = build_session(build_run_config(str(multi), None))
    objective = build_objective(session.cfg.objective)
    objective.bind(session.prepared)
    objective.batch_sampler(session.cfg.train, [8] * len(objective.groups))
    [callback] = objective.callbacks()
    model = session.model
    runner = types.SimpleNamespace(model=model, accelerator=types.SimpleNamespace(unwrap_model=lambda m: m))
    owned = callback.owned(model, "alpha")
    assert any(k.startswith("adapter.") and ".alpha_only." in k for k in owned) and any(k.startswith("head.") for k in owned)
    assert not any(".shared." in k for k in owned) and not any(k.startswith("adapter.") for k in callback.owned(model, "beta"))

    def params(pattern: str) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if pattern in n}

    callback.on_evaluate(runner, None, {"alpha/accuracy": 0.9, "beta/accuracy": 0.5})
    first = {k: params(k) for k in (".alpha_only.", ".shared.", "heads.alpha.", "heads.beta.")}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # an epoch's worth of change to everything
    callback.on_evaluate(runner, None, {"alpha/accuracy": 0.8, "beta/accuracy": 0.6})  # alpha worse, beta better
    assert objective.sampler.active == {1}  # alpha (group 0) stops being sampled after patience 1
    later = {k: params(k) for k in first}
    restored = PerTaskStopping(objective)
    restored.load_state_dict(callback.state_dict())  # what a checkpoint carries
    callback.on_train_end(runner, None)
    for key, expected in [(".alpha_only.", first), ("heads.alpha.", first), (".shared.", later), ("heads.beta.", later)]:
        now = params(key)
        assert now and all(torch.equal(now[n], expected[key][n]) for n in now), key
    assert restored.best == callback.best and restored.bad == callback.bad
    assert all(torch.equal(restored.weights[t][k], v) for t, w in callback.weights.items() for k, v in w.items())
