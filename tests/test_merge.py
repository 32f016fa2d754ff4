"""mmsft merge: soups and task-vector methods on tiny runs, TIES on a hand-made example, LoRA through
peft against an explicit ΔW sum, DoRA as explicit ΔW sums, heads kept per task, run folders that
eval / predict accept."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from derive_fixtures import *  # noqa: F401,F403
from derive_fixtures import toy_task_yaml, train_toy
from mmsft.cli.main import main
from mmsft.errors import UserError
from mmsft.merge import methods
from mmsft.pipeline import evaluate_run, load_run, predict_run


@pytest.fixture(scope="module")
def runs(derive_env, tiny_bert4):
    root = derive_env
    task = toy_task_yaml(root, tiny_bert4)
    other = toy_task_yaml(root, tiny_bert4, name="toy2", labels=("bad", "good"))
    out = {"task": task, "root": root}
    for seed in (1, 2, 3):
        out[f"full{seed}"] = train_toy(task, root / f"full{seed}", "full", [f"train.seed={seed}"])
    out["other"] = train_toy(other, root / "other", "full")
    out["lora4"] = train_toy(task, root / "lora4", "lora", ["adapter.r=4", "adapter.dropout=0"])
    out["lora8"] = train_toy(task, root / "lora8", "lora", ["adapter.r=8", "adapter.dropout=0", "train.seed=5"])
    out["dora1"] = train_toy(task, root / "dora1", "dora", ["adapter.r=4", "adapter.dropout=0"])
    out["dora2"] = train_toy(task, root / "dora2", "dora", ["adapter.r=4", "adapter.dropout=0", "train.seed=6"])
    return out


def _backbone(run) -> dict:
    """Plain backbone weights of a run (LoRA / DoRA folded in)."""
    from mmsft.adapters import merge_adapters

    session = load_run(run)
    merge_adapters(session.model, session.cfg.adapters)
    return {k: v.detach().clone() for k, v in session.model.backbone.model.state_dict().items()}


def _logits(run, texts=("great results", "sales fell sharply", "the quarter")):
    return torch.tensor([list(r["scores"].values()) for r in predict_run(run, list(texts))])


# -- the tensor methods -------------------------------------------------------------------------
def test_ties_sign_election_on_a_hand_made_example():
    a, b = torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([-3.0, 1.0, 0.8, -0.5])
    # summed: [-2, -1, 3.8, 0] -> signs (-, -, +, none); only entries agreeing with the elected sign are averaged
    assert torch.allclose(methods.ties_tensor([a, b], [1.0, 1.0], density=1.0), torch.tensor([-3.0, -2.0, 1.9, 0.0]))
    # trimmed to the top half by magnitude: a -> [0, -2, 3, 0], b -> [-3, 1, 0, 0]; summed [-3, -1, 3, 0]
    assert torch.equal(methods.ties_tensor([a, b], [1.0, 1.0], density=0.5), torch.tensor([-3.0, -2.0, 3.0, 0.0]))
    base = {"w": torch.ones(4)}
    merged = methods.ties(base, methods.task_vectors([{"w": base["w"] + a}, {"w": base["w"] + b}], base), density=0.5, scale=0.5)
    assert torch.equal(merged["w"], torch.tensor([-0.5, 0.0, 2.5, 1.0]))


def test_dare_drops_and_rescales():
    v = {"w": torch.ones(10_000)}
    out = methods.dare({"w": torch.zeros(10_000)}, [v], density=0.25, seed=3)["w"]
    assert set(out.unique().tolist()) == {0.0, 4.0}
    assert 0.2 < (out > 0).float().mean() < 0.3


def test_task_arithmetic_and_toward_base():
    base, fine = {"w": torch.tensor([1.0, 1.0])}, {"w": torch.tensor([3.0, 0.0])}
    vec = methods.task_vectors([fine], base)
    assert torch.equal(methods.task_arithmetic(base, vec, scale=0.5)["w"], torch.tensor([2.0, 0.5]))
    assert torch.equal(methods.toward_base(fine, base, 0.25)["w"], torch.tensor([2.5, 0.25]))


# -- whole runs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["average", "ties", "task_arithmetic"])
def test_merge_of_identical_runs_is_the_identity(runs, method, tmp_path, capsys):
    run = runs["full1"]
    extra = ["--density", "1"] if method == "ties" else ["--weights", "0.5", "0.5"] if method == "task_arithmetic" else []
    assert main(["merge", str(run), str(run), "--method", method, *extra, "--out", str(tmp_path / "m")]) == 0
    summary = json.loads(capsys.readouterr().out)
    merged, source = _backbone(tmp_path / "m"), _backbone(run)
    for key in source:
        assert torch.allclose(merged[key].float(), source[key].float(), atol=1e-6), key
    assert torch.allclose(_logits(tmp_path / "m"), _logits(run), atol=1e-4)
    assert summary["test"]["toy"]["accuracy"] == evaluate_run(run).metrics["accuracy"]
    assert json.loads((tmp_path / "m" / "merge.json").read_text())["method"] == method


def test_greedy_soup_keeps_the_best_ingredient_and_scores_what_it_saved(runs, tmp_path, capsys):
    ingredients = [str(runs[f"full{s}"]) for s in (1, 2, 3)]
    assert main(["merge", *ingredients, "--method", "greedy_soup", "--out", str(tmp_path / "soup")]) == 0
    record = json.loads((tmp_path / "soup" / "merge.json").read_text())["greedy_soup"]
    alone = record["ingredients_validation"]
    assert record["kept"][0] == max(alone, key=alone.get)  # starts from the best ingredient
    assert record["soup_validation"] >= max(alone.values())
    assert evaluate_run(tmp_path / "soup", "validation").metrics["accuracy"] == pytest.approx(record["soup_validation"])
    dropped = [t["run"] for t in record["trail"] if not t["kept"]]
    assert all(t["soup_validation"] < record["soup_validation"] or t["kept"] for t in record["trail"])
    assert set(record["kept"]) | set(dropped) == set(ingredients)


def test_runs_with_different_label_sets_keep_their_heads_and_each_loads(runs, tmp_path, capsys):
    out = tmp_path / "ties"
    assert main(["merge", str(runs["full1"]), str(runs["other"]), "--method", "ties", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(summary["test"]) == ["toy", "toy2"]
    for name, source in (("toy", runs["full1"]), ("toy2", runs["other"])):
        heads, original = (load_file(str(r / "model" / "heads.safetensors")) for r in (out / name, source))
        assert all(torch.equal(heads[k], original[k]) for k in original)  # not averaged across label sets
        rows = predict_run(out / name, ["great results"])
        assert set(rows[0]["scores"]) == ({"neg", "pos"} if name == "toy" else {"bad", "good"})
        assert evaluate_run(out / name).metrics["accuracy"] == summary["test"][name]["accuracy"]
    a, b = _backbone(out / "toy"), _backbone(out / "toy2")
    assert all(torch.equal(a[k], b[k]) for k in a)  # one merged backbone


def test_with_base_one_returns_the_pretrained_backbone(runs, tiny_bert4, tmp_path):
    from transformers import BertModel

    assert main(["merge", str(runs["full1"]), str(runs["full2"]), "--method", "task_arithmetic", "--with-base", "1",
                 "--no-test", "--out", str(tmp_path / "m")]) == 0
    base = BertModel.from_pretrained(tiny_bert4).state_dict()
    merged = _backbone(tmp_path / "m")
    assert all(torch.allclose(merged[k], base[k]) for k in base if base[k].is_floating_point())


def _adapter_weights(run, name: str, base: dict) -> dict:
    """From the saved adapter tensors alone, per targeted layer: LoRA's update s·B·A, or (DoRA, when
    the adapter has magnitude vectors) the merged weight m ⊙ (W0 + s·BA) / ||W0 + s·BA|| (row norms)."""
    cfg = json.loads((run / "model" / "adapters" / name / "adapter_config.json").read_text())
    tensors = load_file(str(run / "model" / "adapters" / name / "adapter_model.safetensors"))
    scaling = cfg["lora_alpha"] / cfg["r"]
    out = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            layer = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            delta = scaling * tensors[key.replace("lora_A", "lora_B")] @ a
            magnitude = tensors.get(f"base_model.model.{layer}.lora_magnitude_vector")
            if magnitude is None:
                out[f"{layer}.weight"] = delta
            else:
                w = base[f"{layer}.weight"] + delta
                out[f"{layer}.weight"] = (magnitude / w.norm(dim=1)).view(-1, 1) * w
    return out


def test_lora_task_arithmetic_through_peft_equals_the_explicit_delta_w_sum(runs, tiny_bert4, tmp_path):
    from transformers import BertModel

    out = tmp_path / "lora"
    assert main(["merge", str(runs["lora4"]), str(runs["lora8"]), "--method", "task_arithmetic", "--weights", "0.7", "0.4",
                 "--lora", "peft", "--out", str(out)]) == 0
    record = json.loads((out / "merge.json").read_text())
    assert record["path"] == "peft" and record["peft_combination"] == "cat"
    assert json.loads((out / "model" / "adapters" / "merged" / "adapter_config.json").read_text())["r"] == 12  # ranks 4 + 8
    base = BertModel.from_pretrained(tiny_bert4).state_dict()
    d4, d8 = _adapter_weights(runs["lora4"], "lora", base), _adapter_weights(runs["lora8"], "lora", base)
    merged = _backbone(out)
    assert d4 and set(d4) == set(d8)
    for key in d4:
        assert torch.allclose(merged[key], base[key] + 0.7 * d4[key] + 0.4 * d8[key], atol=1e-5), key
    evaluate_run(out)


def test_peft_ties_needs_equal_ranks(runs, tmp_path):
    with pytest.raises(UserError, match="equal LoRA ranks"):
        from mmsft.merge.run import MergeRequest, merge_runs

        merge_runs([runs["lora4"], runs["lora8"]], tmp_path / "t", MergeRequest("ties", lora="peft"))
    assert not (tmp_path / "t").exists()


def test_dora_is_refused_by_peft_and_merged_as_explicit_delta_w_sums(runs, tiny_bert4, tmp_path, capsys):
    from transformers import BertModel

    dora = [str(runs["dora1"]), str(runs["dora2"])]
    assert main(["merge", *dora, "--method", "task_arithmetic", "--lora", "peft", "--out", str(tmp_path / "refused")]) == 2
    assert "DoRA" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main(["merge", *dora, "--method", "task_arithmetic", "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "merge.json").read_text())["path"] == "delta"
    base = BertModel.from_pretrained(tiny_bert4).state_dict()
    w1, w2 = _adapter_weights(runs["dora1"], "dora", base), _adapter_weights(runs["dora2"], "dora", base)
    merged = _backbone(tmp_path / "m")
    for key in w1:
        assert torch.allclose(merged[key], base[key] + (w1[key] - base[key]) + (w2[key] - base[key]), atol=1e-5), key


def test_bad_merge_input_exits_2_and_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["merge", str(runs["full1"]), str(runs["full2"]), "--method", "average", "--weights", "1", "--out", str(out)]) == 2
    assert "--weights: 1 weights for 2 runs" in capsys.readouterr().err and not out.exists()
    assert main(["merge", str(runs["full1"]), "--method", "ties", "--out", str(out)]) == 2
    assert not out.exists()


def test_init_seed_gives_soup_ingredients_one_start_and_their_own_data_order(derive_env, tiny_bert4):
    """``train.init_seed``: runs of seeds 43 and 44 that share init seed 42 start from seed 42's heads and LoRA
    factors; their data order and dropout still follow their own seeds."""
    from mmsft.pipeline import build_session
    from mmsft.spec import build_run_config

    task = toy_task_yaml(derive_env, tiny_bert4, name="toy_init")

    def start(*overrides):
        session = build_session(build_run_config(str(task), "lora", list(overrides)))
        return {k: v.clone() for k, v in session.model.state_dict().items() if "lora_" in k or k.startswith("heads.")}, torch.rand(4)

    (own42, _), (own43, draw43) = start("train.seed=42"), start("train.seed=43")
    (shared43, after43), (shared44, after44) = (start("train.seed=43", "train.init_seed=42"), start("train.seed=44", "train.init_seed=42"))
    assert any(k.startswith("heads.") for k in own42) and any("lora_A" in k for k in own42)
    assert any(not torch.equal(own42[k], own43[k]) for k in own42)  # plain seeds: different starts
    assert all(torch.equal(own42[k], shared43[k]) and torch.equal(own42[k], shared44[k]) for k in own42)
    assert not torch.equal(after43, after44)  # dropout / sampling draws differ by the run's seed
    assert torch.equal(start("train.seed=43", "train.init_seed=43")[1], draw43)  # init_seed == seed: as before
