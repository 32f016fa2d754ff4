"""Hostile input, fuzzed: every task YAML, override and data file ends in success or a ``UserError``.

Inputs are copies of small real samples (``../shared/data``) under a temporary folder, mutated by
hypothesis: bytes flipped, inserted (delimiters, quotes, NULs, CR, BOMs, invalid UTF-8, markup,
numbers such as nan / 1e999 / -1), deleted, lines dropped, duplicated and truncated; JSON and YAML
documents also structurally (a value anywhere replaced by another JSON value, a key dropped or
added).  Each case must return rows / a config / a ``DetectionSet``, or raise a ``UserError`` whose
message is one line (the CLI turns it into exit 2); any other exception fails the test with the
input that caused it.  Derandomized (the same cases every run), no example database.

The cases tried per target are counted and printed as ``fuzz: ...`` lines at the end of the run
(in the terminal summary, whatever the capture mode).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmsft.errors import UserError  # noqa: E402
from mmsft.paths import data_root  # noqa: E402

DATA = data_root()
PROJECT = Path(__file__).resolve().parents[1]
COUNTS: dict[str, Counter] = defaultdict(Counter)


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


def outcome(target: str, call):
    """Run one case: its result, or None for a ``UserError`` (checked: exit code 2, one line)."""
    COUNTS[target]["cases"] += 1
    try:
        result = call()
    except UserError as exc:
        COUNTS[target]["user_error"] += 1
        text = str(exc)
        assert exc.exit_code == 2 and text and "\n" not in text, repr(text)
        return None
    COUNTS[target]["ok"] += 1
    return result


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary(request):
    """Print the counts once the module is done, past pytest's output capture."""
    yield
    total = sum(c["cases"] for c in COUNTS.values())
    lines = [f"fuzz: {name}: {c['cases']} cases ({c['ok']} read, {c['user_error']} UserError)" for name, c in sorted(COUNTS.items())]
    lines.append(f"fuzz: {total} cases over {len(COUNTS)} targets")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- mutations ----------------------------------------------------------------------------------------------
TOKENS = [b",", b'"', b"'", b"\t", b"\n", b"\r", b"\r\n", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe9", b"\xc3", b"@",
          b"\\", b" ", b"<review>", b"</review>", b"<review_text>", b"</review_text>", b"<title>", b"<", b">", b"&",
          b"<!ENTITY x 'y'>", b"<?xml version='1.0'?>", b"{", b"}", b"[", b"]", b":", b'"messages"', b"null", b"1e999",
          b"-1", b"nan", b"inf", b"0", b"99", b"0.5", b"1.5", b"-0.2", b"&a [*a]", b"*a", b"!!python/object:os.system",
          b"- ", b"#", b"---", b"{lang}", b"label", b"text"]

OP = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=6))),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("drop_line"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("dup_line"), st.integers(0, 1 << 20), st.just(0)),
)
MUTATIONS = st.lists(OP, min_size=1, max_size=5)


def mutate(data: bytes, ops) -> bytes:
    for op, pos, arg in ops:
        if op in ("drop_line", "dup_line"):
            lines = data.split(b"\n")
            i = pos % len(lines)
            lines[i:i + 1] = [] if op == "drop_line" else [lines[i], lines[i]]
            data = b"\n".join(lines)
            continue
        i = pos % (len(data) + 1)
        if op == "flip" and data:
            i = min(i, len(data) - 1)
            data = data[:i] + bytes([data[i] ^ arg]) + data[i + 1:]
        elif op == "insert":
            data = data[:i] + arg + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + arg:]
        elif op == "truncate":
            data = data[:i]
    return data


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)


def mutate_tree(doc, draw, steps: int):
    """``steps`` structural edits at random places of a JSON / YAML document (a deep copy)."""
    doc = copy.deepcopy(doc)
    for _ in range(steps):
        node, depth = doc, 0
        while isinstance(node, (dict, list)) and node and depth < 8:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            key = draw(st.sampled_from(keys))
            child = node[key]
            if not isinstance(child, (dict, list)) or not child or draw(st.integers(0, 3)) == 0:
                action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
                if action == "replace":
                    node[key] = draw(JSON_VALUES)
                elif action == "delete":
                    del node[key]
                elif isinstance(node, dict):
                    node[draw(st.text(min_size=1, max_size=8))] = draw(JSON_VALUES)
                else:
                    node.append(draw(JSON_VALUES))
                break
            node, depth = child, depth + 1
    return doc


def head(path: Path, n: int, encoding: str = "utf-8") -> bytes:
    return "\n".join(path.read_bytes().decode(encoding).splitlines()[:n]).encode(encoding) + b"\n"


# -- text classification readers (mmsft/data/readers.py) --------------------------------------------------------
def _rows_ok(rows) -> None:
    assert isinstance(rows, list)
    for row in rows:
        assert isinstance(row["text"], str) and isinstance(row["label"], str) and isinstance(row["source"], str)


@pytest.fixture(scope="module")
def samples() -> dict:
    bank = head(DATA / "banking77" / "train.csv", 40)
    import csv

    records = list(csv.DictReader(io.StringIO(bank.decode())))
    review = (DATA / "multi_domain_sentiment" / "books" / "positive.review").read_bytes()
    review = review[: review.find(b"</review>", review.find(b"</review>", review.find(b"</review>") + 1) + 1) + len(b"</review>")] + b"\n"
    return {
        "csv": bank,
        "tsv": head(DATA / "sst2" / "train.tsv", 40),
        "jsonl": "".join(json.dumps({"text": r["text"], "label": r["category"]}) + "\n" for r in records).encode(),
        "phrasebank": head(DATA / "financial_phrasebank" / "Sentences_50Agree.txt", 40, "latin-1"),
        "review_xml": review,
    }


READER_CASES = {  # format -> (options, file name)
    "csv": ({"text_column": "text", "label_column": "category"}, "bank.csv"),
    "tsv": ({"text_column": "sentence", "label_column": "label"}, "sst2.tsv"),
    "jsonl": ({"text_column": ["text", "sentence"], "label_column": "label"}, "bank.jsonl"),
    "phrasebank": ({}, "phrases.txt"),
    "review_xml": ({}, "positive.review"),
}


@pytest.mark.parametrize("fmt, n", [("csv", 150), ("tsv", 100), ("jsonl", 120), ("phrasebank", 120), ("review_xml", 120)])
def test_text_readers_survive_mutated_real_files(fmt, n, samples, work):
    from mmsft.data.readers import READERS

    options, name = READER_CASES[fmt]
    path = work / "text" / name
    path.parent.mkdir(exist_ok=True)
    reader = READERS.get(fmt)

    @fuzz(n)
    @given(ops=MUTATIONS, encoding=st.sampled_from(["utf-8", "latin-1"]))
    def case(ops, encoding):
        path.write_bytes(mutate(samples[fmt], ops))
        rows = outcome(f"readers.{fmt}", lambda: reader(path, encoding=encoding, **options))
        if rows is not None:
            _rows_ok(rows)

    path.write_bytes(samples[fmt])  # the unmutated sample reads
    _rows_ok(reader(path, encoding="latin-1" if fmt == "phrasebank" else "utf-8", **options))
    case()


def test_jsonl_reader_survives_structural_mutations(samples, work):
    from mmsft.data.readers import read_jsonl

    records = [json.loads(line) for line in samples["jsonl"].decode().splitlines()][:10]
    path = work / "text" / "tree.jsonl"
    path.parent.mkdir(exist_ok=True)

    @fuzz(80)
    @given(data=st.data())
    def case(data):
        doc = mutate_tree(records, data.draw, data.draw(st.integers(1, 4)))
        path.write_text("".join(json.dumps(r) + "\n" for r in doc) if isinstance(doc, list) else json.dumps(doc))
        rows = outcome("readers.jsonl (structure)", lambda: read_jsonl(path, encoding="utf-8", text_column="text", label_column="label"))
        if rows is not None:
            _rows_ok(rows)

    case()


def test_unknown_encoding_is_a_user_error(samples, work):
    from mmsft.data.readers import read_phrasebank

    path = work / "text" / "enc.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(samples["phrasebank"])
    with pytest.raises(UserError, match="encoding"):
        read_phrasebank(path, encoding="no-such-codec")


# -- generation readers (mmsft/kinds/generation/readers.py) ---------------------------------------------------------
def _messages_ok(rows) -> None:
    assert isinstance(rows, list)
    for row in rows:
        assert row["messages"] and all(isinstance(m["content"], str) and m["content"] for m in row["messages"])
        assert row["messages"][-1]["role"] == "assistant"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in row["fields"].items())


@pytest.fixture(scope="module")
def gen_samples() -> dict:
    import csv

    raw = (DATA / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv").read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(raw))
    rows = [next(reader) for _ in range(13)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    header, records = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
    jsonl = []
    for i, r in enumerate(records):
        if i % 2:
            jsonl.append({"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}],
                          "intent": r["intent"]})
        else:
            jsonl.append({"source": r["instruction"], "target": r["response"], "category": r["category"]})
    src = DATA / "multi30k" / "raw"
    return {"csv": out.getvalue().encode(), "jsonl": jsonl, "header": header,
            "en": head(src / "train.en", 20), "de": head(src / "train.de", 20)}


def _gen_spec(**kw):
    return SimpleNamespace(**{"source_lang": "en", "target_lang": "de", "encoding": "utf-8", "source_column": "source",
                              "target_column": "target", "field_columns": [], **kw})


def test_parallel_reader_survives_mutated_real_files(gen_samples, work):
    from mmsft.kinds.generation.readers import read_parallel

    root = work / "parallel"
    root.mkdir()

    @fuzz(120)
    @given(ops=MUTATIONS, side=st.sampled_from(["en", "de"]))
    def case(ops, side):
        for lang in ("en", "de"):
            (root / f"p.{lang}").write_bytes(mutate(gen_samples[lang], ops) if lang == side else gen_samples[lang])
        rows = outcome("generation.parallel", lambda: read_parallel(root, "p.{lang}", _gen_spec()))
        if rows is not None:
            _messages_ok(rows)

    case()


def test_generation_csv_reader_survives_mutated_real_files(gen_samples, work):
    from mmsft.kinds.generation.readers import read_csv_pairs

    root = work / "gencsv"
    root.mkdir()
    spec = _gen_spec(source_column="instruction", target_column="response", field_columns=["intent", "category"])

    @fuzz(150)
    @given(ops=MUTATIONS)
    def case(ops):
        (root / "b.csv").write_bytes(mutate(gen_samples["csv"], ops))
        rows = outcome("generation.csv", lambda: read_csv_pairs(root, "b.csv", spec))
        if rows is not None:
            _messages_ok(rows)

    (root / "b.csv").write_bytes(gen_samples["csv"])
    assert len(read_csv_pairs(root, "b.csv", spec)) == 12
    case()


def test_generation_jsonl_reader_survives_mutations(gen_samples, work):
    from mmsft.kinds.generation.readers import read_jsonl_conversations

    root = work / "genjsonl"
    root.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in gen_samples["jsonl"]).encode()

    @fuzz(160)
    @given(data=st.data())
    def case(data):
        if data.draw(st.booleans()):
            body = mutate(text, data.draw(MUTATIONS))
        else:
            doc = mutate_tree(gen_samples["jsonl"], data.draw, data.draw(st.integers(1, 4)))
            body = ("".join(json.dumps(r) + "\n" for r in doc) if isinstance(doc, list) else json.dumps(doc)).encode()
        (root / "c.jsonl").write_bytes(body)
        rows = outcome("generation.jsonl", lambda: read_jsonl_conversations(root, "c.jsonl", _gen_spec()))
        if rows is not None:
            _messages_ok(rows)

    (root / "c.jsonl").write_bytes(text)
    assert len(read_jsonl_conversations(root, "c.jsonl", _gen_spec())) == 12
    case()


# -- detection (mmsft/vision/yolo.py, voc.py, coco.py) --------------------------------------------------------------
VEHICLES = DATA / "vehicles_openimages"


@pytest.fixture(scope="module")
def yolo_root(work) -> Path:
    root = work / "yolo"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for image in sorted((VEHICLES / split / "images").glob("*.jpg"))[:3]:
            shutil.copy(image, root / split / "images" / image.name)
            shutil.copy(VEHICLES / split / "labels" / f"{image.stem}.txt", root / split / "labels" / f"{image.stem}.txt")
    shutil.copy(VEHICLES / "data.yaml", root / "data.yaml")
    return root


def _set_ok(result) -> None:
    assert result.samples and all(s.boxes.shape[0] == len(s.labels) for s in result.samples)
    assert all(0 <= label < len(result.class_names) for s in result.samples for label in s.labels)


def test_yolo_loader_survives_mutated_labels_yaml_and_images(yolo_root):
    from mmsft.vision import load_yolo

    labels = sorted((yolo_root / "train" / "labels").glob("*.txt"))
    images = sorted((yolo_root / "train" / "images").glob("*.jpg"))
    files = {"label": labels[0], "yaml": yolo_root / "data.yaml", "image": images[0]}
    originals = {k: p.read_bytes() for k, p in files.items()}
    _set_ok(load_yolo(yolo_root / "data.yaml", "train"))

    @fuzz(200)
    @given(ops=MUTATIONS, which=st.sampled_from(["label", "label", "label", "yaml", "image"]), skip_bad=st.booleans(),
           split=st.sampled_from(["train", "valid"]))
    def case(ops, which, skip_bad, split):
        files[which].write_bytes(mutate(originals[which], ops))
        try:
            result = outcome(f"vision.yolo ({which})", lambda: load_yolo(yolo_root / "data.yaml", split, skip_bad=skip_bad))
        finally:
            files[which].write_bytes(originals[which])
        if result is not None:
            _set_ok(result)

    case()


def test_yolo_data_yaml_survives_structural_mutations(yolo_root, work):
    from mmsft.vision import load_yolo

    original = yaml.safe_load((VEHICLES / "data.yaml").read_text())
    path = yolo_root / "data.yaml"

    @fuzz(80)
    @given(data=st.data())
    def case(data):
        doc = mutate_tree(original, data.draw, data.draw(st.integers(1, 3)))
        path.write_text(yaml.safe_dump(doc))
        try:
            result = outcome("vision.yolo (data.yaml structure)", lambda: load_yolo(path, "train"))
        finally:
            shutil.copy(VEHICLES / "data.yaml", path)
        if result is not None:
            _set_ok(result)

    case()


def _voc_xml(image: Path, label: Path, names: list[str]) -> str:
    from PIL import Image

    with Image.open(image) as im:
        width, height = im.size
    objects = []
    for line in label.read_text().splitlines():
        c, cx, cy, w, h = line.split()
        cx, cy, w, h = (float(v) for v in (cx, cy, w, h))
        x1, y1 = max(1, round((cx - w / 2) * width) + 1), max(1, round((cy - h / 2) * height) + 1)
        x2, y2 = min(width, round((cx + w / 2) * width)), min(height, round((cy + h / 2) * height))
        objects.append(f"  <object>\n    <name>{names[int(c)]}</name>\n    <difficult>0</difficult>\n"
                       f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n  </object>\n")
    return (f"<annotation>\n  <filename>{image.name}</filename>\n  <size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>\n{''.join(objects)}</annotation>\n")


def test_voc_loader_survives_mutated_xml(yolo_root, work):
    from mmsft.vision import load_voc

    names = yaml.safe_load((VEHICLES / "data.yaml").read_text())["names"]
    root = work / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = []
    for image in sorted((yolo_root / "train" / "images").glob("*.jpg")):
        shutil.copy(image, root / "JPEGImages" / image.name)
        (root / "Annotations" / f"{image.stem}.xml").write_text(_voc_xml(image, yolo_root / "train" / "labels" / f"{image.stem}.txt", names))
        ids.append(image.stem)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    target = root / "Annotations" / f"{ids[0]}.xml"
    original = target.read_bytes()
    split_file = root / "ImageSets" / "Main" / "train.txt"
    split_original = split_file.read_bytes()
    _set_ok(load_voc(root, split="train", class_names=names))

    @fuzz(150)
    @given(ops=MUTATIONS, which=st.sampled_from(["xml", "xml", "xml", "split"]), skip_bad=st.booleans(), named=st.booleans())
    def case(ops, which, skip_bad, named):
        file, base = (target, original) if which == "xml" else (split_file, split_original)
        file.write_bytes(mutate(base, ops))
        try:
            result = outcome(f"vision.voc ({which})", lambda: load_voc(root, split="train", skip_bad=skip_bad,
                                                                        class_names=names if named else None))
        finally:
            file.write_bytes(base)
        if result is not None:
            _set_ok(result)

    case()


def test_coco_loader_survives_mutated_json(work):
    from mmsft.vision import load_coco

    coco = DATA / "coco_mini_captions"
    full = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    images = full["images"][:3]
    keep = {img["id"] for img in images}
    doc = {"images": images, "annotations": [a for a in full["annotations"] if a["image_id"] in keep][:12],
           "categories": full["categories"]}
    for ann in doc["annotations"]:
        ann.pop("segmentation", None)
    root = work / "coco"
    (root / "images").mkdir(parents=True)
    for img in images:
        shutil.copy(coco / "val2017" / img["file_name"], root / "images" / img["file_name"])
    path = root / "instances.json"
    text = json.dumps(doc).encode()
    path.write_bytes(text)
    _set_ok(load_coco(path, root / "images"))

    @fuzz(200)
    @given(data=st.data(), skip_bad=st.booleans())
    def case(data, skip_bad):
        if data.draw(st.integers(0, 2)) == 0:
            path.write_bytes(mutate(text, data.draw(MUTATIONS)))
        else:
            path.write_text(json.dumps(mutate_tree(doc, data.draw, data.draw(st.integers(1, 4)))))
        result = outcome("vision.coco", lambda: load_coco(path, root / "images", skip_bad=skip_bad))
        if result is not None:
            _set_ok(result)

    case()


# -- the task-YAML loader and overrides (mmsft/spec.py, mmsft/config.py) --------------------------------------------------
TASK_NAMES = ["finance_sentiment", "translation_en_de", "traffic_vehicles", "customer_service_reply", "banking77_intent"]
ADAPTERS = [None, "lora", "full", "frozen", "frozen_top2,lora", "dora", "detector_top3"]


def test_task_yaml_loader_survives_mutated_tasks(work):
    from mmsft.spec import build_run_config

    texts = {name: (PROJECT / "tasks" / f"{name}.yaml").read_bytes() for name in TASK_NAMES}
    docs = {name: yaml.safe_load(text) for name, text in texts.items()}
    folder = work / "tasks"
    folder.mkdir()

    @fuzz(250)
    @given(data=st.data(), name=st.sampled_from(TASK_NAMES), adapter=st.sampled_from(ADAPTERS))
    def case(data, name, adapter):
        path = folder / f"{name}.yaml"
        if data.draw(st.booleans()):
            path.write_bytes(mutate(texts[name], data.draw(MUTATIONS)))
        else:
            path.write_text(yaml.safe_dump(mutate_tree(docs[name], data.draw, data.draw(st.integers(1, 4)))))
        outcome("spec.task_yaml", lambda: build_run_config(str(path), adapter))

    case()


def _key_paths(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _key_paths(value, f"{prefix}{key}.")
    yield prefix.rstrip(".")


VALUES = ["-1", "0", "1", "1e-3", "-1e-3", "nan", ".nan", ".inf", "-.inf", "1e999", "[1, 2]", "[]", "{a: 1}", "{}", "null", "~",
          "true", "no", "'x'", "\"", "&a [*a]", "[", "}", ":", "- a", "!!python/object/apply:os.system [ls]", "0.5", "2", "999999999999",
          "cuda", "fp16", "skip", "stop", "accuracy", "bleu", "lora", "", " ", "é", "\x00"]


def test_overrides_survive_generated_key_values():
    from mmsft.config import to_dict
    from mmsft.spec import build_run_config

    keys = sorted({k for k in _key_paths(to_dict(build_run_config("finance_sentiment", "lora"))) if k} |
                  {"adapter.r", "adapter.alpha", "adapters.lora.r", "adapters.lora.options.dropout", "model.heads.classification.dropout",
                   "train.early_stopping.metric", "train.callbacks", "model.modules", "objective.name", "train.nonfinite"})
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys).map(lambda k: k + ".x"),
                    st.sampled_from(keys).map(lambda k: k.rsplit(".", 1)[0]), st.text(min_size=0, max_size=12))
    value = st.one_of(st.sampled_from(VALUES), st.text(max_size=10))
    override = st.one_of(st.tuples(key, value).map(lambda kv: f"{kv[0]}={kv[1]}"), st.text(max_size=16))

    @fuzz(300)
    @given(task=st.sampled_from(TASK_NAMES), adapter=st.sampled_from(ADAPTERS), overrides=st.lists(override, min_size=1, max_size=4))
    def case(task, adapter, overrides):
        outcome("spec.overrides", lambda: build_run_config(task, adapter, overrides))

    case()


def test_run_folder_config_survives_mutations(work):
    """``config.yaml`` of a run folder from someone else (``mmsft eval`` / ``predict`` / ``--resume`` read it first)."""
    from mmsft.config import to_dict
    from mmsft.spec import build_run_config, load_run_config

    run = work / "run"
    run.mkdir()
    doc = to_dict(build_run_config("finance_sentiment", "lora"))
    text = yaml.safe_dump(doc, sort_keys=False).encode()
    override = st.sampled_from(["data.root=/nowhere", "data.generate.num_beams=4", "train.eval_batch_size=-3", "train.lr=1",
                                "model.heads.classification.options.predict_score_thresh=0.5", "data.split.train=2"])

    @fuzz(150)
    @given(data=st.data(), overrides=st.lists(override, max_size=2))
    def case(data, overrides):
        if data.draw(st.booleans()):
            (run / "config.yaml").write_bytes(mutate(text, data.draw(MUTATIONS)))
        else:
            (run / "config.yaml").write_text(yaml.safe_dump(mutate_tree(doc, data.draw, data.draw(st.integers(1, 4)))))
        outcome("spec.run_config", lambda: load_run_config(run, overrides))

    case()
