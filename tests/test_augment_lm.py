"""LM-backed synthesis (paraphrase, back-translation): batching, quality checks, options, real models."""
import random

import pytest

from mmsft.augment import METHODS, augment_rows, parse_entries
from mmsft.augment.base import AugmentMethod
from mmsft.augment.lm import EXAMPLES, LMOptions, acceptable, translation_prompt
from mmsft.data.splits import normalise
from mmsft.errors import UserError

ROWS = [
    {"text": "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in 2007 .", "label": 2},
    {"text": "The company 's net sales decreased by 5 % to EUR 120 million .", "label": 0},
    {"text": "The contract includes servicing of the equipment .", "label": 1},
    {"text": "Sales in Finland fell sharply in the third quarter .", "label": 0},
]


def test_quality_checks_reject_copies_length_outliers_and_changed_numbers():
    opts = LMOptions()
    src = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in 2007 ."
    assert acceptable(src, "In 2007 operating profit climbed to EUR 13.1 million from EUR 8.7 million.", opts)
    assert not acceptable(src, "operating profit rose to eur 13.1 mn from eur 8.7 mn in 2007 .", opts)  # a copy
    assert not acceptable(src, "Profit rose.", opts)  # too short
    assert not acceptable(src, "In 2008 operating profit rose to EUR 13.1 mn from EUR 8.7 mn .", opts)  # a number changed
    assert acceptable(src, "In 2008 operating profit rose to EUR 13.1 mn from EUR 8.7 mn .", LMOptions(keep_numbers=False))
    assert not acceptable(src, "", opts)
    # meaning drift: too few of the source's content words survive (back-translation's default check)
    drift = LMOptions(min_word_overlap=0.3)
    assert acceptable(src, "In 2007 operating profit climbed to EUR 13.1 million from EUR 8.7 million.", drift)
    assert not acceptable("There are no substitutes to AC drives .", "The car has no spare parts.", drift)
    assert acceptable("There are no substitutes to AC drives .", "The car has no spare parts.", opts)
    assert not acceptable("Sales in Finland fell .", "The shop opens at 9 o'clock.", drift)  # the one-shot example echoed


def test_translation_prompt_is_one_shot_when_both_languages_have_an_example():
    prompt = translation_prompt("Sales fell .", "English", "German", "{from}: {text}\n{to}:")
    assert prompt == f"English: {EXAMPLES['English']}\nGerman: {EXAMPLES['German']}\n\nEnglish: Sales fell .\nGerman:"
    assert translation_prompt("Hei", "Finnish", "English", "{from}: {text}\n{to}:") == "Finnish: Hei\nEnglish:"


class Recorder(AugmentMethod):
    """A batched method that records its chunk sizes and returns copies (rejected as duplicates) for odd rows."""
    name, kinds = "recorder", ("text_classification",)

    def __init__(self):
        self.chunks = []

    def transform_many(self, rows, ctx, options, rng):
        self.chunks.append(len(rows))
        return [{"text": r["text"] + " indeed", "label": r["label"]} if i % 2 == 0 else dict(r) for i, r in enumerate(rows)]


def test_batched_methods_get_chunks_of_the_rows_still_wanted(monkeypatch):
    recorder = Recorder()
    monkeypatch.setitem(METHODS._items, "recorder", recorder)
    rows = [{"text": f"row number {i}", "label": i % 2} for i in range(10)]
    new, stats = augment_rows(rows, parse_entries([{"method": "recorder", "factor": 0.8}], "text_classification", "augment"), seed=0)
    # each chunk is the deficit: 8 wanted, 4 accepted (odd rows are copies) -> the 2 rows left in the pass
    # (1 accepted) -> a new pass asks for the 3 still missing
    assert recorder.chunks[:3] == [8, 2, 3]
    assert len(new) == len({r["text"] for r in new}) == stats["0:recorder"]["added"] == 8
    assert all(r["text"].endswith(" indeed") for r in new)


@pytest.mark.parametrize("raw, expected", [
    ({"method": "paraphrase", "prompt": "Paraphrase this."}, "{text}"),
    ({"method": "paraphrase", "temperature": -1}, "temperature"),
    ({"method": "paraphrase", "min_length_ratio": 3}, "min_length_ratio"),
    ({"method": "back_translation", "min_word_overlap": 1.5}, "min_word_overlap"),
    ({"method": "back_translation", "pivot_language": "English"}, "pivot_language"),
    ({"method": "back_translation", "beam": 4}, "beam"),
])
def test_bad_lm_options_are_rejected(raw, expected):
    with pytest.raises(UserError) as err:
        parse_entries([raw], "text_classification", "data.augment")
    assert expected in str(err.value)


def test_lm_methods_fit_text_classification_only():
    for name in ("paraphrase", "back_translation"):
        assert METHODS.get(name).kinds == ("text_classification",)
    with pytest.raises(UserError, match="does not fit"):
        parse_entries(["paraphrase"], "detection", "data.augment")


def test_paraphrase_with_the_real_smollm2_keeps_labels_and_numbers():
    new, stats = augment_rows(ROWS, parse_entries([{"method": "paraphrase", "factor": 0.5}], "text_classification", "augment"), seed=3)
    assert stats["0:paraphrase"]["added"] >= 1
    sources = {normalise(r["text"]): r for r in ROWS}
    for row in new:
        origin = ROWS[int(row["source"].rsplit(":", 1)[1])]
        assert row["label"] == origin["label"] and normalise(row["text"]) not in sources
        assert acceptable(origin["text"], row["text"], LMOptions())


def test_back_translation_with_the_real_gemma_round_trips_through_the_pivot():
    method = METHODS.get("back_translation")
    options = parse_entries([{"method": "back_translation", "max_new_tokens": 32}], "text_classification", "a")[0].options
    out = method.transform_many(ROWS[2:], None, options, random.Random(0))
    kept = [(src, row) for src, row in zip(ROWS[2:], out) if row is not None]
    assert kept, "no back-translation passed the checks"
    for src, row in kept:
        assert row["label"] == src["label"] and normalise(row["text"]) != normalise(src["text"])

