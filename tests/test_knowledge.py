"""Knowledge bases: formats and their bad inputs (file:line, exit 2, nothing written), the dense index
and its stale detection, dense / BM25 / hybrid retrieval, alias linking, leakage exclusion (a training
row never retrieves itself, no validation/test row is ever reachable), the knowledge config checks,
the groundedness metrics and ``mmsft kb``."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mmsft.cli.main import main
from mmsft.config import from_dict
from mmsft.errors import UserError
from mmsft.knowledge.config import KnowledgeSpec
from mmsft.knowledge.inject import TaskKnowledge, fit_passages
from mmsft.knowledge.kb import chunk_text, read_kb_file
from mmsft.knowledge.named import load_kb

ENTRIES = [
    {"id": "great", "text": "great: positive", "aliases": ["great"], "sentiment": "positive"},
    {"id": "awful", "text": "awful: negative", "aliases": ["awful"], "sentiment": "negative"},
    {"id": "profit", "text": "profit rose: positive", "aliases": ["profit rose", "profit"], "sentiment": "positive"},
    {"id": "loss", "text": "loss widened: negative", "aliases": ["loss widened"], "sentiment": "negative"},
]


def write_jsonl(path: Path, entries=ENTRIES) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def spec(kb, **extra) -> KnowledgeSpec:
    return from_dict(KnowledgeSpec, {"kb": str(kb), **extra}, "knowledge")


# -- formats ----------------------------------------------------------------------------------------
def test_jsonl_csv_and_folder_kbs(tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    a = read_kb_file(write_jsonl(tmp_path / "kb.jsonl"))
    (tmp_path / "kb.csv").write_text("id,text,aliases,sentiment\n" + "".join(
        f'{e["id"]},{e["text"]},{"|".join(e["aliases"])},{e["sentiment"]}\n' for e in ENTRIES))
    b = read_kb_file(tmp_path / "kb.csv")
    assert [e.record() for e in a.entries] == [e.record() for e in b.entries]
    assert a.content_hash == b.content_hash and a.entries[2].aliases == ("profit rose", "profit")
    assert a.entries[0].fields == {"sentiment": "positive"}

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    words = " ".join(f"word{i}" for i in range(60))
    (docs / "a.md").write_text(f"# Refund policy\n\n{words}\n")
    (docs / "sub" / "b.txt").write_text("Short note about delivery.\n")
    (docs / "skip.pdf").write_text("not read")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    kb = read_kb_file(docs, lambda text: chunk_text(text, tokenizer, 40, 10))
    ids = [e.id for e in kb.entries]
    assert ids[0] == "a.md#0" and ids[-1] == "sub/b.txt#0" and len([i for i in ids if i.startswith("a.md")]) >= 3
    assert kb.entries[0].title == "Refund policy" and kb.entries[-1].title == "b"
    first, second = kb.entries[0].text.split(), kb.entries[1].text.split()
    assert first[-3:] == second[:3] or set(first[-4:]) & set(second[:6])  # neighbours overlap


def test_chunks_overlap_by_tokens(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    text = " ".join(f"w{i}" for i in range(30))
    chunks = chunk_text(text, tokenizer, 12, 4)
    lens = [len(tokenizer(c, add_special_tokens=False).input_ids) for c in chunks]
    assert all(n <= 12 for n in lens) and chunks[0].startswith("w0") and chunks[-1].endswith("w29")
    assert chunks[1].split()[0] in chunks[0]  # the second window starts inside the first


BAD = {
    "empty_file": ("kb.jsonl", "\n", "data file is empty"),
    "no_entries": ("kb.csv", "id,text\n\n", "the knowledge base has no entries"),
    "no_text": ("kb.jsonl", '{"id": "a", "text": "x"}\n{"id": "b", "title": "t"}\n', "kb.jsonl:2: entry 'b' has no text"),
    "blank_text": ("kb.csv", "id,text\na,ok\nb,  \n", "kb.csv:3: entry 'b' has no text"),
    "duplicate": ("kb.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "kb.jsonl:2: duplicate id 'a' (first at"),
    "bad_json": ("kb.jsonl", '{"id": "a", "text": "x"}\n\n{"id": "b", text: y}\n', "kb.jsonl:3: not valid JSON"),
    "not_object": ("kb.jsonl", '["a", "b"]\n', "kb.jsonl:1: a line must be a JSON object"),
    "no_text_column": ("kb.csv", "id,body\na,x\n", "kb.csv:1: the header lacks ['text']"),
    "ragged_csv": ("kb.csv", "id,text\na,x,extra\n", "kb.csv:2: row has 3 fields"),
    "bad_bytes": ("kb.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xe9"}\n', "kb.jsonl:2: cannot decode byte 0xe9"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_kbs_fail_with_file_and_line_and_write_nothing(case, tmp_path, isolated, capsys):
    name, content, message = BAD[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        read_kb_file(path)
    assert main(["kb", "build", str(path), "--encoder", "minilm-l6"]) == 2
    assert message.split(": ", 1)[-1][:20] in capsys.readouterr().err
    assert not (isolated / "cache" / "knowledge" / "index").exists()  # nothing half-written


def test_unknown_named_kb_suggests_and_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="Did you mean 'icd10'"):
        load_kb("icd11")
    with pytest.raises(UserError, match="knowledge-base file not found"):
        load_kb(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="built from a task's training rows"):
        load_kb("task_replies")


def test_named_kbs_from_the_installed_packages():
    icd = load_kb("icd10")
    assert len(icd) == 95_622
    entry = icd.entries[icd.position["I10"]]
    assert entry.text == "Essential (primary) hypertension" and entry.fields["chapter"] == "Diseases of the circulatory system"
    assert "essential hypertension" in entry.aliases
    assert icd.entries[icd.position["C509"]].fields["chapter"] == "Neoplasms"
    assert icd.entries[icd.position["R51"]].fields["chapter_number"] == 18
    lm = load_kb("loughran_mcdonald")
    assert 3_800 < len(lm) < 4_000 and lm.entries[lm.position["loss"]].fields["negative"]
    assert lm.entries[lm.position["loss"]].passage == "loss: negative"
    assert len(load_kb("banking77_intents")) == 77


# -- the dense index --------------------------------------------------------------------------------
def test_index_build_reuse_and_stale_detection(tmp_path, tiny_bert, isolated, capsys):
    from mmsft.knowledge.index import FILES, default_folder, load_index

    kb_path = write_jsonl(tmp_path / "kb.jsonl")
    kb = read_kb_file(kb_path)
    first = load_index(kb, str(tiny_bert))
    assert first.rebuilt and all((first.folder / f).is_file() for f in FILES)
    meta = json.loads((first.folder / "index.json").read_text())
    assert meta["encoder"] == str(tiny_bert) and meta["content_hash"] == kb.content_hash and meta["count"] == 4
    assert first.folder == default_folder(kb, str(tiny_bert)) and first.embeddings.shape == (4, 32)
    assert not load_index(kb, str(tiny_bert)).rebuilt  # current: read, not rebuilt

    write_jsonl(kb_path, [*ENTRIES, {"id": "new", "text": "record sales: positive"}])
    changed = read_kb_file(kb_path)
    capsys.readouterr()
    again = load_index(changed, str(tiny_bert))
    assert again.rebuilt and "stale (the KB's content changed" in capsys.readouterr().out
    assert again.embeddings.shape[0] == 5 and json.loads((again.folder / "index.json").read_text())["content_hash"] == changed.content_hash

    named = tmp_path / "my_index"  # a folder the user names: another encoder is an error, not a silent rebuild
    assert main(["kb", "build", str(kb_path), "--encoder", str(tiny_bert), "--index", str(named)]) == 0
    before = (named / "index.json").read_text()
    assert main(["kb", "build", str(kb_path), "--encoder", "minilm-l6", "--index", str(named)]) == 2
    assert f"built with encoder '{tiny_bert}', not 'minilm-l6'" in capsys.readouterr().err
    assert (named / "index.json").read_text() == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    assert main(["kb", "build", str(kb_path), "--encoder", str(tiny_bert), "--index", str(notes), "--replace"]) == 2
    assert (notes / "keep.txt").read_text() == "mine"


def test_retrieval_methods_and_exclusions(tmp_path, tiny_bert, isolated):
    kb = write_jsonl(tmp_path / "kb.jsonl")
    for method in ("bm25", "dense", "hybrid"):
        know = TaskKnowledge(spec(kb, retrieval={"method": method, "k": 2, "encoder": str(tiny_bert)}))
        hits = know.search([{"text": "profit rose again"}, {"text": "the loss widened"}], cache=False)
        assert all(len(h) == (1 if method == "bm25" else 2) for h in hits)  # bm25 returns matching entries only
        assert all(h[0].score >= h[-1].score for h in hits)
        if method != "dense":  # a random tiny encoder ranks arbitrarily; lexical methods must find the words
            assert hits[0][0].id == "profit" and hits[1][0].id == "loss"
        found = know.retriever.search(["profit rose again"], 4, [{2}])[0]
        assert "profit" not in [h.id for h in found]


def test_fit_passages_keeps_the_budget(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    passages = ["one two three four five", "six seven eight nine"]
    assert fit_passages(passages, tokenizer, 7, reserve=1) == ["one two three four five"]  # 1 + 5, then 1 left: the separator
    assert fit_passages(passages, tokenizer, 9, reserve=1) == ["one two three four five", "six seven"]  # cut at a token
    assert fit_passages(["a b c"], tokenizer, 1, reserve=1) == []


def test_alias_linking_on_word_boundaries_longest_first():
    from mmsft.knowledge.kb import Entry, KnowledgeBase
    from mmsft.knowledge.linking import AliasLinker

    kb = KnowledgeBase("t", [Entry("I10", "hypertension", "", ("hypertension", "essential hypertension")),
                             Entry("J45", "asthma", "", ("asthma",)), Entry("X", "cat", "", ("cat",))])
    linker = AliasLinker(kb, min_chars=3)
    text = "Essential  hypertension and asthma; no cathedral, a cat."
    assert [kb.entries[i].id for _, _, i in linker.matches(text)] == ["I10", "J45", "X"]
    assert linker.link("asthma and asthma and hypertension", 5) == [1, 0]
    icd = load_kb("icd10")
    linked = AliasLinker(icd).link("Patients with essential hypertension and type 2 diabetes mellitus had pneumonia.", 8)
    assert [icd.entries[i].id for i in linked] == ["I10", "E11", "J18"]


# -- leakage ------------------------------------------------------------------------------------------
ROWS = {
    "train": [{"text": "the quarterly profit rose sharply this year", "source": "f:1", "label": "pos"},
              {"text": "the operating loss widened in the third quarter", "source": "f:2", "label": "neg"},
              {"text": "sales were great in every region", "source": "f:3", "label": "pos"},
              {"text": "the loss widened again in the third quarter", "source": "f:6", "label": "neg"}],
    "validation": [{"text": "costs were awful for the whole group", "source": "f:4", "label": "neg"}],
    "test": [{"text": "a record profit for the shipping unit", "source": "f:5", "label": "pos"}],
}


def test_held_out_rows_are_blocked_and_train_rows_never_retrieve_themselves(tmp_path, isolated):
    kb = write_jsonl(tmp_path / "kb.jsonl", [
        *ENTRIES,
        {"id": "copy_of_test", "text": "Note: a record profit for the shipping unit, says the CFO"},  # contains a test row
        {"id": "copy_of_val", "text": "costs were AWFUL for the whole   group"},  # equals a validation row
        {"id": "copy_of_train", "text": "the operating loss widened in the third quarter"},
    ])
    know = TaskKnowledge(spec(kb, retrieval={"method": "bm25", "k": 7}), ROWS, "t")
    assert {know.kb.entries[i].id for i in know.blocked} == {"copy_of_test", "copy_of_val"}
    everything = [r for rows in ROWS.values() for r in rows]
    for row, hits in zip(everything, know.search(everything, cache=False)):
        ids = {h.id for h in hits}
        assert not ids & {"copy_of_test", "copy_of_val"}
        assert ("copy_of_train" in ids) == (row["source"] != "f:2" and "loss" in row["text"])


def test_kbs_derived_from_a_task_hold_training_rows_only(tmp_path, isolated):
    rows = {split: [{**r, "reply": f"reply to {r['text']}", "fields": {"intent": r["label"]}} for r in part] for split, part in ROWS.items()}
    labels = TaskKnowledge(spec("task_labels", retrieval={"method": "bm25", "k": 2}), rows, "t")
    replies = TaskKnowledge(spec("task_replies", retrieval={"method": "bm25", "k": 3}), rows, "t")
    train = {r["source"] for r in rows["train"]}
    held = [r for split in ("validation", "test") for r in rows[split]]
    for know in (labels, replies):
        assert all(set(e.sources) <= train for e in know.kb.entries)
        assert not any(h["text"] in e.text or h["reply"] in e.text for e in know.kb.entries for h in held)
    assert [e.id for e in labels.kb.entries] == ["pos", "neg"] and labels.kb.entries[0].sources == ("f:1", "f:3")
    for row, hits in zip(rows["train"], replies.search(rows["train"], cache=False)):
        assert all(row["source"] not in replies.kb.entries[h.index].sources for h in hits)  # never its own reply
    assert replies.kb.entries[0].title == "pos" and replies.kb.entries[0].fields["request"] == rows["train"][0]["text"]


# -- config ------------------------------------------------------------------------------------------
def test_knowledge_config_errors(toy_task, tmp_path):
    from mmsft.spec import build_run_config

    kb = write_jsonl(tmp_path / "kb.jsonl")
    cases = {
        f"knowledge={{kb: {kb}, retrieval: {{budget: 40}}}}": "knowledge.retrieval.budget: retrieval budget 40 tokens leaves no room",
        f"knowledge={{kb: {kb}, inject: [retrieved_segment]}}": "knowledge.inject[0]: unknown knowledge input 'retrieved_segment'. Did you mean",
        f"knowledge={{kb: {kb}, retrieval: {{method: sparse}}}}": "knowledge.retrieval.method: unknown retrieval method",
        f"knowledge={{kb: {kb}, retrieval: {{k: 0}}}}": "knowledge.retrieval.k: k must be >= 1",
        f"knowledge={{kb: {kb}, chunk: {{tokens: 16, overlap: 16}}}}": "knowledge.chunk: chunk tokens must be",
        f"knowledge={{kbb: {kb}}}": "knowledge.kbb: unknown key 'kbb'. Did you mean 'kb'",
        "model.modules=[{type: entity_memory}]": "model.modules[0]: a module reads knowledge (entity_links)",
        "metrics=[accuracy, knowledge_f1]": "does not fit a text_classification task",
    }
    for override, message in cases.items():
        with pytest.raises(UserError) as err:
            build_run_config(str(toy_task), "lora", [override])
        assert message in str(err.value), (override, str(err.value))
    ok = build_run_config(str(toy_task), "lora", [f"knowledge={{kb: {kb}, retrieval: {{budget: 24}}}}"])
    assert ok.knowledge.retrieval.budget == 24 and ok.knowledge.inject == ["retrieved_segments"]


def test_generation_rejects_entity_links_and_knowledge_metrics_need_a_kb(toy_mt_yaml_path, tmp_path):
    from mmsft.spec import build_run_config

    kb = write_jsonl(tmp_path / "kb.jsonl")
    with pytest.raises(UserError, match="knowledge.inject: a generation task cannot inject 'entity_links'"):
        build_run_config(str(toy_mt_yaml_path), "lora", [f"knowledge={{kb: {kb}, inject: [entity_links]}}"])
    with pytest.raises(UserError, match="metric 'knowledge_f1' scores outputs against retrieved passages"):
        build_run_config(str(toy_mt_yaml_path), "lora", ["metrics=[bleu, knowledge_f1]"])


@pytest.fixture
def toy_mt_yaml_path(tmp_path, tiny_bert):
    task = tmp_path / "mt.yaml"
    (tmp_path / "data").mkdir()
    for split in ("train", "val", "test"):
        for lang in ("en", "de"):
            (tmp_path / "data" / f"{split}.{lang}").write_text("a b\n")
    task.write_text(textwrap.dedent(f"""\
        name: mt
        kind: generation
        data: {{format: parallel, root: {tmp_path / "data"}, files: {{train: "train.{{lang}}", validation: "val.{{lang}}", test: "test.{{lang}}"}}}}
        model: {{backbone: {tiny_bert}, max_length: 64}}
        metrics: [bleu]
        """))
    return task


# -- groundedness metrics ----------------------------------------------------------------------------
def test_groundedness_metrics_by_hand():
    from mmsft.metrics import compute, key_direction

    preds = ["Cancel order {{Order Number}} at {{Website URL}} within 14 days.", "Call {{Phone Number}} now."]
    knowledge = [["To cancel {{Order Number}}, visit {{Website URL}}; refunds in 14 days."], []]
    sources = ["how do I cancel my order", "call you now"]
    out = compute(["groundedness", "hallucinated_placeholders", "knowledge_f1"], preds, ["r1", "r2"], knowledge=knowledge, sources=sources)
    # reply 1: words cancel order days (+ within: unsupported) -> 3/4; number 14 -> 1/1; placeholders 2/2
    # reply 2: word call -> 1/1 (in the input; "now" is a stop word); placeholder {{phone number}} unsupported
    assert out["supported_word_share"] == pytest.approx(4 / 5)
    assert out["supported_number_share"] == 1.0
    assert out["supported_placeholder_share"] == pytest.approx(2 / 3)
    assert out["hallucinated_placeholder_rate"] == pytest.approx(1 / 3)
    assert out["supported_content_share"] == pytest.approx(7 / 9)
    assert 0 < out["knowledge_f1"] < 1 and key_direction("hallucinated_placeholder_rate") is False
    with pytest.raises(UserError, match="needs knowledge"):
        compute(["knowledge_f1"], preds, ["r1", "r2"])


# -- mmsft kb ----------------------------------------------------------------------------------------
def test_kb_search_prints_hits_with_scores(tmp_path, isolated, capsys):
    kb = write_jsonl(tmp_path / "kb.jsonl")
    assert main(["kb", "search", str(kb), "the loss widened", "-k", "2", "--method", "bm25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["1.", lines[0].split()[1], "loss"] and float(lines[0].split()[1]) > 0
    assert "ms per query" in lines[-1]
    assert main(["kb", "search", str(kb), "x", "-k", "0"]) == 2
    assert main(["kb", "list"]) == 0 and "icd10" in capsys.readouterr().out
