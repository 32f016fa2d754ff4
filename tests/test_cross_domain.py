"""Cross-domain benchmark and domain adaptation: matrix assembly and resume on a tiny BERT, the label-set
check, that target_mlm and dann never use a target label (or the target's held-out splits), that the
gradient-reversal layer flips the domain loss's gradient into the backbone, and exact DANN resume."""
from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import NEGATIVE, POSITIVE
from mmsft.cli.main import main
from mmsft.crossdomain.config import parse_bench
from mmsft.errors import UserError

FAST = ["train.epochs=1", "train.batch_size=8", "train.eval_batch_size=32", "train.warmup_ratio=0.0"]
TINY_MLM = {"max_steps": 3, "batch_size": 8}


def _rows(path: Path, n: int, seed: int, filler: list[str], flip: bool = False) -> None:
    """A learnable two-class CSV; ``filler`` words make the domain, ``flip`` inverts every label."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        body = " ".join(rng.choice(filler) for _ in range(rng.randint(2, 10)))
        lines.append(f"{body} {word} {seed}-{i},{'neg' if label == flip else 'pos'}")
    path.write_text("\n".join(lines) + "\n")


def _task(folder: Path, name: str, bert: Path, filler: list[str], seed: int, labels=("neg", "pos"),
          flip_train: bool = False, held_out_seed: int | None = None) -> Path:
    """A toy domain with its own train / validation / test files; ``flip_train`` poisons the train
    labels, ``held_out_seed`` replaces validation and test by other rows."""
    data = folder / name
    data.mkdir(parents=True)
    _rows(data / "train.csv", 48, seed, filler, flip=flip_train)
    other = seed if held_out_seed is None else held_out_seed
    _rows(data / "validation.csv", 16, other + 100, filler)
    _rows(data / "test.csv", 24, other + 200, filler)
    if labels != ("neg", "pos"):
        for split in ("train", "validation", "test"):
            path = data / f"{split}.csv"
            path.write_text(path.read_text().replace(",neg\n", f",{labels[0]}\n").replace(",pos\n", f",{labels[1]}\n"))
    task = folder / f"{name}.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: {name}
        kind: text_classification
        data:
          format: csv
          root: {data}
          files: {{train: train.csv, validation: validation.csv, test: test.csv}}
          labels: [{labels[0]}, {labels[1]}]
        model: {{backbone: {bert}, max_length: 32}}
        metrics: [accuracy, f1_macro]
        train: {{epochs: 1, batch_size: 8, eval_batch_size: 32, lr: 1.0e-3, log_every_steps: 2}}
        """))
    return task


BOOKS = ["the", "novel", "author", "chapter", "plot", "reader", "pages"]
KITCHEN = ["the", "blender", "pan", "knife", "kettle", "lid", "handle"]


@pytest.fixture
def domains(tmp_path, tiny_bert, isolated):
    return {"a": _task(tmp_path, "toy_books", tiny_bert, BOOKS, 1), "b": _task(tmp_path, "toy_kitchen", tiny_bert, KITCHEN, 2)}


def _bench(**raw):
    return parse_bench({"overrides": FAST, "options": {"target_mlm": TINY_MLM}, **raw})


def _run(bench, out, fresh=False):
    from mmsft.crossdomain.bench import run_benchmark

    return run_benchmark(bench, out, fresh, "test")


class _CountTrain:
    def __init__(self, monkeypatch):
        import mmsft.pipeline as pipeline

        self.calls, real = [], pipeline.train

        def counted(cfg, run_dir=None, resume=False, callbacks=()):
            self.calls.append((cfg.name, resume))
            return real(cfg, run_dir, resume=resume, callbacks=callbacks)
        monkeypatch.setattr(pipeline, "train", counted)


# -- matrix assembly and resume ----------------------------------------------------------------------
def test_matrix_rows_gap_and_resume(domains, isolated, monkeypatch):
    a, b = str(domains["a"]), str(domains["b"])
    out = isolated / "bench"
    counter = _CountTrain(monkeypatch)
    data = _run(_bench(tasks=[a, b], seeds=2), out)
    assert len(counter.calls) == 4  # source_only: one model per (source, seed), scored on both tasks
    rows = {(r["source"], r["target"]): r for r in data["rows"]}
    assert set(rows) == {("toy_books", "toy_books"), ("toy_books", "toy_kitchen"), ("toy_kitchen", "toy_kitchen"), ("toy_kitchen", "toy_books")}
    for (source, target), row in rows.items():
        assert row["seeds"] == [42, 43] and len(row["accuracy_per_seed"]) == 2 and row["n_test"] == 24
        assert row["in_domain"] == (source == target)
        assert abs(row["accuracy_mean"] - sum(row["accuracy_per_seed"]) / 2) < 1e-4
    cross = rows[("toy_books", "toy_kitchen")]
    assert cross["transfer_gap"] == pytest.approx(rows[("toy_kitchen", "toy_kitchen")]["accuracy_mean"] - cross["accuracy_mean"], abs=1e-4)
    # the in-domain score is the run's own test score: the scoring path reads the target exactly as the task does
    record = json.loads((out / "cells/lora/source_only/toy_books/seed42/cell.json").read_text())
    assert record["scores"]["toy_books"]["accuracy"] == pytest.approx(record["source_test"]["accuracy"])
    summary = data["summary"][0]
    assert summary["group"] == "pairs among the targets" and summary["pairs"] == 2 and summary["seeds"] == [42, 43]
    on_disk = json.loads((out / "matrix.json").read_text())
    assert on_disk["rows"] == data["rows"]
    assert (out / "matrix.png").stat().st_size > 1000 and "toy_books" in (out / "matrix.md").read_text()

    # rerun: every finished cell is reused, nothing trains, the same rows come out
    counter.calls.clear()
    assert _run(_bench(tasks=[a, b], seeds=2), out)["rows"] == data["rows"] and counter.calls == []

    # another machine: the committed matrix JSON carries the finished cells, nothing retrains
    from mmsft.crossdomain.bench import seed_cells

    elsewhere = isolated / "elsewhere"
    assert seed_cells(out / "matrix.json", elsewhere) == 4 and seed_cells(out / "matrix.json", elsewhere) == 0
    assert not any(elsewhere.rglob("model"))  # records only, no trained weights travel
    assert _run(_bench(tasks=[a, b], seeds=2), elsewhere)["rows"] == data["rows"] and counter.calls == []

    # a matrix carried in part: every carried cell is reported before the first training, even one late in the plan
    from mmsft.crossdomain.bench import execute
    from mmsft.crossdomain.plan import make_plan

    late = isolated / "late.json"
    late.write_text(json.dumps({"cells": [c for c in on_disk["cells"] if c["cell"]["seed"] == 43]}))
    assert seed_cells(late, isolated / "partial") == 2
    # report only: the finished cells, nothing trained
    finished = execute(make_plan(_bench(tasks=[a, b], seeds=2)), isolated / "partial", run=False)
    assert [r["cell"]["seed"] for r in finished] == [43, 43] and counter.calls == []
    updates = []
    execute(make_plan(_bench(tasks=[a, b], seeds=2)), isolated / "partial",
            on_update=lambda records: updates.append((len(counter.calls), [r["cell"]["seed"] for r in records])))
    assert [u for u in updates if u[0] == 0][-1][1] == [43, 43] and updates[-1] == (2, [43, 43, 42, 42])
    counter.calls.clear()

    # a cell whose scores were lost is rescored from its saved model, without training
    (out / "cells/lora/source_only/toy_kitchen/seed43/cell.json").unlink()
    assert _run(_bench(tasks=[a, b], seeds=2), out)["rows"] == data["rows"] and counter.calls == []

    # a changed training config retrains exactly the affected cells; --fresh recomputes everything planned
    _run(_bench(tasks=[a, b], seeds=1, overrides=[*FAST, "train.lr=5e-4"]), out)
    assert counter.calls == [("toy_books", False), ("toy_kitchen", False)]
    counter.calls.clear()
    _run(_bench(tasks=[a, b], seeds=1, overrides=[*FAST, "train.lr=5e-4"]), out, fresh=True)
    assert len(counter.calls) == 2


def test_progress_estimates_time_left_from_measured_cells():
    from mmsft.crossdomain.plan import Cell
    from mmsft.crossdomain.progress import Progress

    cells = [Cell("a", None, "source_only", "lora", s, ("a", "b")) for s in (1, 2)] + [Cell("a", "b", "dann", "lora", 1, ("b",))]
    progress = Progress(cells, jobs=1)
    assert progress.left() is None  # nothing measured yet
    progress.finished(cells[0], {"wall_seconds": 100.0})
    assert progress.left() == pytest.approx(100 + 100 * 2)  # the other source_only cell + dann at its prior 2x
    progress.finished(cells[2], {"wall_seconds": 150.0})
    assert progress.left() == pytest.approx(100) and "cells 2/3 done" in progress.line()
    progress.close()


# -- label sets ----------------------------------------------------------------------------------------
def test_label_set_mismatch_is_an_error_before_any_training(tmp_path, tiny_bert, isolated, monkeypatch, capsys):
    a = _task(tmp_path, "toy_a", tiny_bert, BOOKS, 1)
    c = _task(tmp_path, "toy_c", tiny_bert, KITCHEN, 2, labels=("negative", "positive"))
    counter = _CountTrain(monkeypatch)
    out = isolated / "bench"
    with pytest.raises(UserError, match=r"label sets differ: 'toy_a' has \['neg', 'pos'\], 'toy_c' has \['negative', 'positive'\]"):
        _run(_bench(tasks=[str(a), str(c)], seeds=1), out)
    assert counter.calls == [] and not out.exists()
    assert main(["bench", "cross-domain", "--tasks", str(a), str(c), "--seeds", "1", "--out", str(out)]) == 2
    assert "label sets differ" in capsys.readouterr().err and not out.exists()
    with pytest.raises(UserError, match="label_map key 'negtive' is no task's label. Did you mean 'negative'"):
        _run(_bench(tasks=[str(a), str(c)], seeds=1, label_map={"negtive": "neg", "positive": "pos"}), out)
    # a stated label_map makes them comparable; ids are matched by name even when the orders differ
    from mmsft.crossdomain.labels import label_order, shared_labels
    from mmsft.spec import build_run_config

    cfgs = {"toy_a": build_run_config(str(a), "lora"), "toy_c": build_run_config(str(c), "lora")}
    shared = shared_labels(cfgs, {"negative": "neg", "toy_c:positive": "pos"})
    assert shared == {"toy_a": ["neg", "pos"], "toy_c": ["neg", "pos"]}
    assert label_order(["pos", "neg"], ["negative", "positive"], ["neg", "pos"]) == ["positive", "negative"]


def test_bad_bench_config_names_the_key(domains):
    with pytest.raises(UserError, match="unknown domain-adaptation method 'danm'. Did you mean 'dann'"):
        _bench(tasks=[str(domains["a"]), str(domains["b"])], methods=["danm"])
    with pytest.raises(UserError, match="options.dann.wieght: unknown key 'wieght'. Did you mean 'weight'"):
        parse_bench({"tasks": ["x", "y"]}, ["dann.wieght=0.5"])
    with pytest.raises(UserError, match="dann needs an adapter that trains the backbone"):
        _run(_bench(tasks=[str(domains["a"]), str(domains["b"])], methods=["dann"], adapters=["frozen"]), Path("/nonexistent/never"))


# -- adaptation never reads a target label (nor the target's validation / test rows) -----------------------
def _trained_weights(out: Path, method: str, pair: str) -> dict:
    model = out / "cells" / "lora" / method / pair / "seed42" / "run" / "model"
    weights = load_file(str(model / "heads.safetensors"))
    weights.update(load_file(str(model / "adapters" / "lora" / "adapter_model.safetensors")))
    return weights


@pytest.mark.parametrize("method", ["target_mlm", "dann"])
def test_adaptation_never_reads_target_labels(method, tmp_path, tiny_bert, isolated):
    """The same target texts with every train label inverted, and other validation / test rows: the
    adapted model must come out bitwise identical.  Any use of a target label (or of a held-out split)
    in the method would change it."""
    from mmsft.adaptation.texts import read_texts

    a = _task(tmp_path, "toy_src", tiny_bert, BOOKS, 1)
    b = _task(tmp_path, "toy_tgt", tiny_bert, KITCHEN, 2)
    poisoned = _task(tmp_path, "toy_tgt_poisoned", tiny_bert, KITCHEN, 2, flip_train=True, held_out_seed=7)
    out = isolated / "bench"
    _run(_bench(sources=[str(a)], targets=[str(b), str(poisoned)], methods=[method], seeds=1), out)
    clean = _trained_weights(out, method, "toy_src__toy_tgt")
    dirty = _trained_weights(out, method, "toy_src__toy_tgt_poisoned")
    assert clean.keys() == dirty.keys() and len(clean) > 4
    for key in clean:
        assert torch.equal(clean[key], dirty[key]), key
    # and the method did adapt: its weights differ from a plain source_only fine-tune of the same seed
    _run(_bench(sources=[str(a)], targets=[str(b)], seeds=1), out)
    plain = load_file(str(out / "cells/lora/source_only/toy_src/seed42/run/model/adapters/lora/adapter_model.safetensors"))
    assert any(not torch.equal(plain[k], clean[k]) for k in plain)
    # what the method was given: the target's train texts, nothing else
    texts_file = next((out / "texts").glob("toy_tgt-*.jsonl"))
    assert all(set(json.loads(line)) == {"text"} for line in texts_file.read_text().splitlines())
    train_texts = [line.rsplit(",", 1)[0] for line in (tmp_path / "toy_tgt" / "train.csv").read_text().splitlines()[1:]]
    test_texts = {line.rsplit(",", 1)[0] for line in (tmp_path / "toy_tgt" / "test.csv").read_text().splitlines()[1:]}
    assert read_texts(texts_file) == train_texts and not test_texts & set(train_texts)


def test_texts_file_with_a_label_is_refused(tmp_path):
    from mmsft.adaptation.texts import read_texts

    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad", "label": "pos"}\n')
    with pytest.raises(UserError, match=r"t.jsonl:2: an unlabelled texts line holds exactly one key, 'text'"):
        read_texts(path)


# -- gradient reversal ---------------------------------------------------------------------------------
def test_reversal_weight_schedule():
    from mmsft.adaptation.grl import reversal_weight

    assert reversal_weight(0.0, "ganin", 1.0) == 0.0
    assert reversal_weight(0.5, "ganin", 1.0) == pytest.approx(2 / (1 + torch.exp(torch.tensor(-5.0)).item()) - 1)
    assert 0.9999 < reversal_weight(1.0, "ganin", 1.0) < 1.0
    assert reversal_weight(0.3, "linear", 0.5) == pytest.approx(0.15) and reversal_weight(0.3, "constant", 0.5) == 0.5


def test_gradient_reversal_flips_the_domain_gradient_into_the_backbone(toy_task, tmp_path):
    """Through the real dann objective on a composed model: the domain loss's gradient reaching the
    backbone is -lambda times the plain (unreversed) gradient; the domain classifier's own is not flipped."""
    from mmsft.adaptation.dann import Dann
    from mmsft.adaptation.texts import TextStream, write_texts
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    texts = write_texts(tmp_path / "target.jsonl", [f"kettle lid handle {i}" for i in range(8)])
    objective_spec = json.dumps({"name": "dann", "target_texts": str(texts), "schedule": "constant", "weight": 0.5, "dropout": 0.0,
                                 "adversary": "reversal"})
    session = build_session(build_run_config(str(toy_task), "full", [f"objective={objective_spec}", "model.heads.classification.dropout=0.0"]))
    model = session.model.eval()  # no dropout: the two passes below see the same function
    dann = Dann(Dann.Options(**{k: v for k, v in json.loads(objective_spec).items() if k != "name"}))
    dann.build(model.backbone.width, "cpu")
    dann.stream = TextStream(dann.texts, session.processor, 32, 4, seed=0)
    batch = session.prepared.collate([session.prepared.splits["train"][i] for i in range(4)])
    param = model.backbone.model.encoder.layer[0].attention.self.query.weight

    def grads(fn):
        model.zero_grad(set_to_none=True)
        dann.classifier.zero_grad(set_to_none=True)
        fn().backward()
        return param.grad.clone(), dann.classifier[0].weight.grad.clone() if dann.classifier[0].weight.grad is not None else None

    task_grad, _ = grads(lambda: model(**batch)["loss"])
    dann.stream.load({"stream.epoch": torch.tensor(0), "stream.position": torch.tensor(0)})
    total_grad, reversed_clf = grads(lambda: dann.loss(model, batch)[0])
    reversed_domain = total_grad - task_grad

    # the same domain loss without the reversal layer
    dann.stream.load({"stream.epoch": torch.tensor(0), "stream.position": torch.tensor(0)})
    import mmsft.adaptation.dann as dann_module

    original = dann_module.grad_reverse
    dann_module.grad_reverse = lambda x, lam: x
    try:
        plain_total, plain_clf = grads(lambda: dann.loss(model, batch)[0])
    finally:
        dann_module.grad_reverse = original
    plain_domain = plain_total - task_grad
    assert plain_domain.abs().max() > 1e-6
    torch.testing.assert_close(reversed_domain, -0.5 * plain_domain, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(reversed_clf, plain_clf)  # the classifier itself still learns to separate the domains


def test_confusion_adversary_gives_the_backbone_the_uniform_target_only(toy_task, tmp_path):
    """``adversary: confusion``: the features get lambda times the gradient of the classifier's cross-entropy
    against the uniform distribution (bounded, zero once the domains are confused); the classifier gets only
    its own domain loss on the detached features."""
    from torch.nn import functional as F

    from mmsft.adaptation.dann import Dann
    from mmsft.adaptation.texts import TextStream, write_texts
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    texts = write_texts(tmp_path / "target.jsonl", [f"kettle lid handle {i}" for i in range(8)])
    options = {"target_texts": str(texts), "schedule": "constant", "weight": 0.5, "dropout": 0.0, "adversary": "confusion"}
    session = build_session(build_run_config(str(toy_task), "full", ["model.heads.classification.dropout=0.0"]))
    model = session.model.eval()
    dann = Dann(Dann.Options(**options))
    dann.build(model.backbone.width, "cpu")
    dann.stream = TextStream(dann.texts, session.processor, 32, 4, seed=0)
    batch = session.prepared.collate([session.prepared.splits["train"][i] for i in range(4)])
    seen = []
    dann.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    loss, _ = dann.loss(model, batch)
    detached, live = seen  # the classifier's own pass, then the backbone's
    assert not detached.requires_grad and live.requires_grad
    live.retain_grad()
    loss.backward()
    clf_grads = [q.grad.clone() for q in dann.classifier.parameters()]
    probe = live.detach().clone().requires_grad_()
    dann.classifier.zero_grad(set_to_none=True)
    expected = torch.autograd.grad(0.5 * -F.log_softmax(dann.classifier(probe), -1).mean(), probe)[0]
    assert expected.abs().max() > 1e-6
    torch.testing.assert_close(live.grad, expected)
    domains = torch.tensor([0] * 4 + [1] * 4)
    own = torch.autograd.grad(F.cross_entropy(dann.classifier(detached), domains), list(dann.classifier.parameters()))
    for got, want in zip(clf_grads, own):
        torch.testing.assert_close(got, want)


def test_dann_resume_is_exact(domains, isolated, tmp_path):
    """Crash mid-training, resume: the classifier, its optimizer and the target stream come back from
    the checkpoint, so the weights equal an uninterrupted run's."""
    from mmsft.adaptation.texts import write_texts
    from mmsft.pipeline import train
    from mmsft.spec import build_run_config
    from mmsft.training.callbacks import Callback

    texts = write_texts(tmp_path / "target.jsonl", [f"kettle blender lid {i}" for i in range(20)])
    overrides = [f"objective={json.dumps({'name': 'dann', 'target_texts': str(texts)})}", "train.epochs=2", "train.save_every_steps=3"]
    straight = train(build_run_config(str(domains["a"]), "lora", overrides), isolated / "straight")

    class Crash(Exception):
        pass

    class CrashAt5(Callback):
        def on_step_end(self, runner, state):
            if state.step == 5:
                raise Crash()

    resumed = isolated / "resumed"
    with pytest.raises(Crash):
        train(build_run_config(str(domains["a"]), "lora", overrides), resumed, callbacks=[CrashAt5()])
    train(build_run_config(str(domains["a"]), "lora", overrides), resumed, resume=True)
    for name in ("heads.safetensors", "adapters/lora/adapter_model.safetensors"):
        x, y = load_file(str(straight / "model" / name)), load_file(str(resumed / "model" / name))
        for key in x:
            assert torch.equal(x[key], y[key]), key
    log = [json.loads(line) for line in (straight / "dann.jsonl").read_text().splitlines()]
    assert log and log[0]["lambda"] < log[-1]["lambda"] <= 1.0 and 0 <= log[-1]["domain_accuracy"] <= 1


# -- the MLM stage ---------------------------------------------------------------------------------------
def test_target_mlm_stage_writes_an_adapted_backbone(tiny_bert, tmp_path):
    from transformers import AutoModel

    from mmsft.adaptation.mlm import MlmOptions, continue_mlm

    folder = tmp_path / "adapted"
    stats = continue_mlm(str(tiny_bert), [f"the kettle lid {i} is great" for i in range(16)], folder, MlmOptions(max_steps=3, batch_size=4),
                         max_length=32, seed=0)
    assert stats["steps"] == 3 and stats["decoder_tied_to_embeddings"]
    assert any(k.startswith("cls.predictions.transform") for k in stats["head_initialised"])
    before, after = AutoModel.from_pretrained(tiny_bert).state_dict(), AutoModel.from_pretrained(folder).state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("encoder.layer.0" in k for k in changed) and not any(k.startswith("pooler") for k in changed)
    assert json.loads((folder / "mlm.json").read_text())["steps"] == 3


def test_adapted_backbone_keeps_the_zoo_pooling_and_lora_targets():
    """A folder backbone has no zoo entry: the fine-tune on MiniLM's MLM-adapted copy must still
    mean-pool and put LoRA on the same modules as source_only does."""
    from mmsft.adaptation.methods import _backbone_pins
    from mmsft.spec import build_run_config

    pins = _backbone_pins(build_run_config("reviews_books", "lora"))
    assert "model.heads.classification.options.pooling=mean" in pins
    assert 'adapters.lora.options.target_modules=["query", "key", "value", "dense"]' in pins


def test_a_later_train_key_at_its_default_keeps_committed_cells_current(domains, monkeypatch):
    """``train.init_seed`` came after cells were committed: unset, a cell's key is the one computed from a config
    without the field (as before it existed); set, it is new."""
    import mmsft.config
    from mmsft.crossdomain.cells import _result_key
    from mmsft.spec import build_run_config

    task = str(domains["a"])
    plain = build_run_config(task, "lora", ["train.seed=43"])
    assert plain.train.init_seed is None
    out = Path("/nonexistent/work")
    key = _result_key(plain, "source_only", None, out)
    assert _result_key(build_run_config(task, "lora", ["train.seed=43", "train.init_seed=42"]), "source_only", None, out) != key
    real = mmsft.config.to_dict

    def before_the_field(obj):  # to_dict recurses through itself: only the whole config loses the field
        data = real(obj)
        if obj is plain:
            del data["train"]["init_seed"]
        return data
    monkeypatch.setattr(mmsft.config, "to_dict", before_the_field)
    assert _result_key(plain, "source_only", None, out) == key


def test_a_cells_key_does_not_depend_on_where_its_work_folder_lies(domains, tmp_path):
    """A dann cell's config names its target texts by path inside the work folder; the key counts that path
    relative to the folder (the file's name carries its content digest), so a moved work folder, or a committed
    report seeding another machine's, keeps its cells; another texts file is another key."""
    from mmsft.crossdomain.cells import _result_key
    from mmsft.spec import build_run_config

    def key(out: Path, name: str = "reviews-0123abcd.jsonl") -> str:
        spec = json.dumps({"name": "dann", "target_texts": str(out / "texts" / name)})
        return _result_key(build_run_config(str(domains["a"]), "lora", [f"objective={spec}"]), "dann", None, out)

    assert key(tmp_path / "here") == key(tmp_path / "elsewhere" / "deeper")
    assert key(tmp_path / "here") != key(tmp_path / "here", "reviews-4567cdef.jsonl")


def test_plan_is_seed_major_with_the_methods_of_a_pair_side_by_side(domains):
    """A benchmark stopped part-way has whole seeds, and within a seed every adaptation method on the same pairs."""
    from mmsft.crossdomain.plan import make_plan

    a, b = str(domains["a"]), str(domains["b"])
    plan = make_plan(_bench(tasks=[a, b], seeds=2, methods=["source_only", "target_mlm", "dann"]))
    order = [(c.seed, c.method, c.source, c.target) for c in plan.cells]
    one_seed = [("source_only", "toy_books", None), ("source_only", "toy_kitchen", None),
                ("target_mlm", "toy_books", "toy_kitchen"), ("dann", "toy_books", "toy_kitchen"),
                ("target_mlm", "toy_kitchen", "toy_books"), ("dann", "toy_kitchen", "toy_books")]
    assert order == [(seed, *cell) for seed in (42, 43) for cell in one_seed]


def test_best_method_per_pair_is_paired_by_seed():
    """A method run on fewer seeds than the baseline is compared on the seeds both have: dann's one seed beats
    source_only's same seed, though source_only's two-seed mean is higher than dann's one."""
    from mmsft.crossdomain.matrix import best_per_pair

    def row(method, per_seed):
        seeds = sorted(per_seed)
        return {"adapter": "lora", "source": "a", "target": "b", "method": method, "in_domain": False, "seeds": seeds,
                "accuracy_per_seed": [per_seed[s] for s in seeds], "accuracy_mean": sum(per_seed.values()) / len(per_seed),
                "gain_std": 0.0}

    rows = [row("source_only", {42: 0.80, 43: 0.90}), row("dann", {42: 0.82}), row("target_mlm", {42: 0.79, 43: 0.88})]
    (best,) = best_per_pair(rows)
    assert best["best_method"] == "dann" and best["seeds"] == [42]
    assert best["best_accuracy"] == 0.82 and best["source_only_accuracy"] == 0.80 and best["gain"] == pytest.approx(0.02)
    (best,) = best_per_pair([rows[0], rows[2]])  # nothing beats the baseline: it is the best, gain 0, all its seeds
    assert best["best_method"] == "source_only" and best["gain"] == 0.0 and best["source_only_accuracy"] == 0.85
