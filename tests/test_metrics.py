"""mmsft.metrics against hand-computed or independently computed values (sklearn, sacrebleu, rouge-score)."""
from __future__ import annotations

from pathlib import Path

import evaluate
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from mmsft import metrics as M
from mmsft.errors import UserError
from mmsft.metrics.bases import ClassIdMetric, TextMetric

PREDS = [0, 1, 2, 2, 1, 3, 0, 1]
REFS = [0, 1, 1, 2, 2, 0, 0, 1]  # class 3 is predicted but never true -> zero_division path

HYPS = ["the cat sat on the mat", "hello there world", " a quick brown fox "]
MULTI_REFS = [["the cat is on the mat", "a cat sat on the mat"], ["hello world"], ["a fast brown fox"]]


def test_registry_covers_every_script():
    scripts = {p.stem for p in M.MODULES_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert {Path(M.METRICS.get(name)).stem for name in M.METRICS.names()} == scripts
    # one script each, except: the three macro scores share one, so do groundedness and hallucinated_placeholders,
    # and multilabel_map and micro_f1
    assert len(M.METRICS.names()) == 18 and len(scripts) == 14


def test_macro_scores_are_one_script_with_three_config_names():
    path = M.METRICS.get("f1_macro")
    assert Path(path).name == "macro_average.py"
    assert M.METRICS.get("precision_macro") == M.METRICS.get("recall_macro") == path
    assert [M.spec(f"{s}_macro").config_name for s in ("f1", "precision", "recall")] == \
        ["f1", "precision", "recall"]
    recall = M.load("recall_macro")
    assert recall.config_name == "recall" and isinstance(recall, ClassIdMetric)
    assert recall is not M.load("f1_macro")
    assert recall.compute(predictions=PREDS, references=REFS) == pytest.approx({"recall_macro": 11 / 24})
    direct = evaluate.load(path, config_name="precision", keep_in_memory=True)
    want = skm.precision_score(REFS, PREDS, average="macro", zero_division=0)
    assert direct.compute(predictions=PREDS, references=REFS) == pytest.approx({"precision_macro": want})
    for bad in ("f2", None):  # no default config: a score must be chosen
        with pytest.raises(ValueError, match="config_name must be one of f1, precision, recall"):
            evaluate.load(path, config_name=bad, keep_in_memory=True)


def test_scripts_load_their_own_class_not_the_imported_base():
    bleu = M.load("bleu")
    assert type(bleu).__name__ == "Bleu" and isinstance(bleu, TextMetric)
    assert type(M.load("accuracy")).__name__ == "Accuracy"


def test_classification_matches_sklearn():
    out = M.compute(["accuracy", "f1_macro", "precision_macro", "recall_macro"], PREDS, REFS)
    assert out["accuracy"] == pytest.approx(5 / 8)
    for name, fn in [("f1_macro", skm.f1_score), ("precision_macro", skm.precision_score),
                     ("recall_macro", skm.recall_score)]:
        assert out[name] == pytest.approx(fn(REFS, PREDS, average="macro", zero_division=0)), name
    # by hand: recall per class 0..3 = 2/3, 2/3, 1/2, 0 -> mean 11/24
    assert out["recall_macro"] == pytest.approx(11 / 24)


def test_macro_labels_option_changes_the_class_set():
    full = M.compute("f1_macro", [0, 1, 1], [0, 1, 0])["f1_macro"]
    wider = M.compute("f1_macro", [0, 1, 1], [0, 1, 0], labels=[0, 1, 2])["f1_macro"]
    assert wider == pytest.approx(full * 2 / 3)  # the extra class scores 0


def test_confusion_matrix_by_hand():
    out = M.compute("confusion_matrix", [0, 1, 1, 2], [0, 0, 1, 1])
    assert out["confusion_matrix_labels"] == [0, 1, 2]
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]  # rows: true, cols: pred


def test_bleu_and_chrf_match_sacrebleu_with_variable_reference_counts():
    streams = [[r[0] for r in MULTI_REFS], [r[1] if len(r) > 1 else None for r in MULTI_REFS]]
    out = M.compute(["bleu", "chrf"], HYPS, MULTI_REFS)
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams).score)
    single = M.compute("bleu", HYPS, [r[0] for r in MULTI_REFS])["bleu"]
    assert single == pytest.approx(sacrebleu.corpus_bleu(HYPS, [streams[0]]).score)
    assert single != pytest.approx(out["bleu"])  # the second reference was really used
    perfect = M.compute(["bleu", "chrf"], ["a b c d e"], ["a b c d e"])
    assert {k: perfect[k] for k in ("bleu", "chrf")} == pytest.approx({"bleu": 100.0, "chrf": 100.0})
    assert perfect["bleu_signature"].startswith("nrefs:1|case:mixed|") and "|tok:13a|" in perfect["bleu_signature"]
    assert "|nc:6|nw:0|" in perfect["chrf_signature"] and f"version:{sacrebleu.__version__}" in perfect["chrf_signature"]


def test_bleu_tokenises_for_the_target_language():
    from mmsft.metrics.modules.bleu import tokenize_for

    assert [tokenize_for(c) for c in ("de", "zh", "zh-Hant", None, "th")] == ["13a", "zh", "zh", "13a", "char"]
    assert tokenize_for("ja") in ("ja-mecab", "char")  # MeCab when installed, else characters
    hyp, ref = ["我喜欢吃苹果和香蕉"], ["我喜欢吃苹果"]
    zh = M.compute("bleu", hyp, ref, language="zh")["bleu"]
    assert zh == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref], tokenize="zh").score) and zh > 0
    assert "|tok:zh|" in M.compute("bleu", hyp, ref, language="zh")["bleu_signature"]  # the report states it
    assert "|tok:char|" in M.compute("bleu", hyp, ref, tokenize="char")["bleu_signature"]  # explicit tokenize wins
    assert M.compute("bleu", hyp, ref)["bleu"] == 0.0  # 13a sees one "word" each: why the language matters


def test_mixed_string_and_list_references_in_one_batch():
    mixed = [MULTI_REFS[0], "hello world", ["a fast brown fox"]]
    for name in ["bleu", "rouge_l", "exact_match", "length_ratio"]:
        assert M.compute(name, HYPS, mixed) == pytest.approx(M.compute(name, HYPS, MULTI_REFS)), name


def test_rouge_l_by_hand_and_against_rouge_score():
    # LCS("the cat sat", "the cat sat down") = 3: P = 1, R = 3/4, F = 6/7
    assert M.compute("rouge_l", ["the cat sat"], ["the cat sat down"])["rouge_l"] == pytest.approx(600 / 7)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    want = sum(scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, MULTI_REFS)) / 3
    assert M.compute("rouge_l", HYPS, MULTI_REFS)["rouge_l"] == pytest.approx(100 * want)
    # the default tokenizer drops non-ASCII words; whitespace tokenisation keeps them
    assert M.compute("rouge_l", ["привет мир"], ["привет мир"])["rouge_l"] == 0.0
    assert M.compute("rouge_l", ["привет мир"], ["привет мир"], tokenizer="whitespace")["rouge_l"] == 100.0


def test_exact_match_strips_and_accepts_any_reference():
    out = M.compute("exact_match", [" a ", "b", "c", "d e"], ["a", ["x", "b"], "C", "d  e"])
    assert out["exact_match"] == pytest.approx(2 / 4)  # case and inner spaces matter


def test_length_ratio_uses_whitespace_tokens_and_first_reference():
    out = M.compute("length_ratio", ["a b", "a b c d", "x"], ["a b c d", ["a b", "zzz"], ""])
    assert out["length_ratio"] == pytest.approx((0.5 + 2.0 + 1.0) / 3)


def test_eos_rate_takes_flags_as_predictions():
    flags = [True, False, True, True]
    out = M.compute(["eos_rate", "exact_match"], ["a", "b", "c", "d"], ["a", "x", "c", "y"],
                    stopped_by_eos=flags)
    assert out == pytest.approx({"eos_rate": 0.75, "exact_match": 0.5})
    direct = M.load("eos_rate").compute(predictions=flags, references=["ignored"] * 4)
    assert direct == pytest.approx({"eos_rate": 0.75})
    with pytest.raises(UserError, match="stopped_by_eos"):
        M.compute("eos_rate", ["a"], ["a"])


def _det(boxes, labels, scores=None):
    item = {"boxes": boxes, "labels": labels}
    if scores is not None:
        item["scores"] = scores
    return item


def test_detection_perfect_shifted_and_false_positive():
    refs = [_det([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), _det([[5, 5, 25, 25]], [1])]
    perfect = [_det(r["boxes"], r["labels"], [0.9] * len(r["labels"])) for r in refs]
    out = M.compute("detection_map", perfect, refs)
    assert out["map50"] == pytest.approx(1.0) and out["map50_95"] == pytest.approx(1.0)
    assert out["ap_per_class"] == {0: pytest.approx({"ap50_95": 1.0, "ap50": 1.0}),
                                   1: pytest.approx({"ap50_95": 1.0, "ap50": 1.0})}

    # class 0 shifted by 1 px: IoU = 90/110 = 0.818, a hit at thresholds 0.50..0.80 (7 of 10);
    # class 1 stretched: IoU = 100/190 = 0.526, a hit at 0.50 only (1 of 10)
    shifted = [_det([[1, 0, 11, 10]], [0], [0.9]), _det([[0, 0, 10, 19]], [1], [0.9])]
    out = M.compute("detection_map", shifted, [_det([[0, 0, 10, 10]], [0]), _det([[0, 0, 10, 10]], [1])])
    assert out["map50"] == pytest.approx(1.0)
    assert out["map50_95"] == pytest.approx((0.7 + 0.1) / 2, abs=1e-6)
    assert out["ap_per_class"] == {0: pytest.approx({"ap50_95": 0.7, "ap50": 1.0}, abs=1e-6),
                                   1: pytest.approx({"ap50_95": 0.1, "ap50": 1.0}, abs=1e-6)}

    # a higher-scored false positive of the same class: precision 1/2 at every recall -> AP 0.5;
    # class 2 has no ground truth, so it is left out of ap_per_class
    noisy = [_det([[100, 100, 120, 120], [0, 0, 10, 10], [50, 50, 60, 60]], [0, 0, 2], [0.95, 0.5, 0.9])]
    out = M.compute("detection_map", noisy, [_det([[0, 0, 10, 10]], [0])])
    assert out["map50"] == pytest.approx(0.5, abs=1e-6)
    assert out["ap_per_class"] == {0: pytest.approx({"ap50_95": 0.5, "ap50": 0.5}, abs=1e-6)}


def test_detection_accepts_images_without_predictions():
    refs = [_det([[0, 0, 10, 10]], [0]), _det([[0, 0, 10, 10]], [0])]
    preds = [_det([[0, 0, 10, 10]], [0], [0.9]), _det([], [], [])]
    # recall 1/2 at precision 1: 51 of COCO's 101 recall points -> AP 51/101
    assert M.compute("detection_map", preds, refs)["map50"] == pytest.approx(51 / 101, abs=1e-6)


@pytest.mark.parametrize("name,preds,refs", [
    ("accuracy", PREDS, REFS),
    ("f1_macro", PREDS, REFS),
    ("bleu", HYPS, MULTI_REFS),
    ("exact_match", [" a ", "b", "c"], ["a", ["x", "b"], "C"]),
    ("detection_map",
     [_det([[0, 0, 10, 10]], [0], [0.9]), _det([[1, 0, 11, 10], [0, 0, 5, 5]], [1, 1], [0.8, 0.7])],
     [_det([[0, 0, 10, 10]], [0]), _det([[0, 0, 10, 10]], [1])]),
])
def test_add_batch_then_compute_equals_compute(name, preds, refs):
    whole = M.load(name, fresh=True).compute(predictions=preds, references=refs)
    module = M.load(name, fresh=True)
    module.add_batch(predictions=preds[:1], references=refs[:1])
    module.add_batch(predictions=preds[1:], references=refs[1:])
    got = module.compute()
    assert got.keys() == whole.keys()
    for key, value in whole.items():  # ap_per_class is a nested dict: compared exactly
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_add_takes_a_bare_string_or_a_list_of_references():
    module = M.load("exact_match", fresh=True)
    module.add(prediction="a", reference="a")
    module.add(prediction="b", reference=["x", "b"])
    module.add(prediction="c", reference="C")
    assert module.compute() == pytest.approx({"exact_match": 2 / 3})


def test_unknown_metric_suggests_a_name():
    with pytest.raises(UserError, match="Did you mean 'accuracy'"):
        M.compute(["acuracy"], [1], [1])
    with pytest.raises(UserError, match="Did you mean 'rouge_l'"):
        M.primary_key("rougel")
    with pytest.raises(UserError):
        M.load("nope")


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="Mismatch"):
        M.compute("accuracy", [1, 2], [1])
    with pytest.raises(UserError, match="references"):
        M.compute("accuracy", [1, 2], None)
    assert M.compute("accuracy", [1, 0], [1, 1]) == {"accuracy": 0.5}  # the cache survived


_SAMPLES = {"int": (PREDS, REFS), "text": (HYPS, MULTI_REFS),
            "det": ([_det([[0, 0, 10, 10]], [0], [0.9])], [_det([[0, 0, 10, 10]], [0])]),
            "multilabel": ([[0.9, 0.2, 0.6], [0.1, 0.8, 0.3]], [[1, 0, 1], [0, 1, 0]]),
            "similarity": ([[0.9, 0.1], [0.2, 0.7], [0.6, 0.3]], [[0], [1], [0]])}
_KINDS = {"bleu": "text", "chrf": "text", "rouge_l": "text", "exact_match": "text",
          "length_ratio": "text", "eos_rate": "text", "detection_map": "det",
          "groundedness": "text", "hallucinated_placeholders": "text", "knowledge_f1": "text"}


def _run(name):
    inputs = M.spec(name).inputs
    preds, refs = _SAMPLES[inputs if inputs in ("multilabel", "similarity") else _KINDS.get(name, "int")]
    return M.compute(name, preds, refs, stopped_by_eos=[True] * len(preds), knowledge=[["the mat", "a fox"]] * len(preds),
                     sources=["a cat"] * len(preds))


def _scalar_keys(result):
    return tuple(k for k, v in result.items() if isinstance(v, (int, float)))


def test_primary_key_is_in_each_result_and_load_is_cached():
    for name in M.METRICS.names():
        assert M.primary_key(name) in _run(name), name
    assert M.primary_key("detection_map") == "map50_95"
    assert M.higher_is_better("accuracy") is True and M.higher_is_better("length_ratio") is None
    assert M.load("accuracy") is M.load("accuracy")
    assert M.load("accuracy", fresh=True) is not M.load("accuracy")


def test_declared_keys_are_the_scalar_keys_of_each_result():
    for name in M.METRICS.names():
        assert _scalar_keys(_run(name)) == M.spec(name).keys, name
    assert M.spec("detection_map").keys == ("map50", "map50_95")
    assert M.spec("bleu").keys == ("bleu",) and M.spec("confusion_matrix").keys == ()


def test_result_keys_lists_what_compute_returns_in_order():
    names = ["confusion_matrix", "recall_macro", "accuracy", "f1_macro", "accuracy"]
    assert M.result_keys(names) == ["recall_macro", "accuracy", "f1_macro"]
    assert M.result_keys(names) == list(_scalar_keys(M.compute(names, PREDS, REFS)))
    text = ["rouge_l", "eos_rate", "bleu", "length_ratio"]
    out = M.compute(text, HYPS, MULTI_REFS, stopped_by_eos=[True, False, True])
    assert M.result_keys(text) == list(_scalar_keys(out)) == text
    assert M.result_keys("detection_map") == ["map50", "map50_95"]
    assert M.result_keys([]) == []
    with pytest.raises(UserError, match="Did you mean 'f1_macro'"):
        M.result_keys(["accuracy", "f1_marco"])
