"""Quickstart: mmsft's Python API end to end, notebook style (each ``# %%`` block is a cell).

    python examples/quickstart.py          # ~1 minute on one CPU thread

What it does: takes a small slice of the Financial PhraseBank (real data in ``../shared/data``, or
``MMSFT_DATA_ROOT``), registers it as a task from a Python dict, fine-tunes the offline MiniLM-L6 with
LoRA for a few steps, evaluates, predicts, and exports the run as a Hugging Face folder that
transformers loads without mmsft.  Every call is what an ``mmsft`` command does (README "Python API"):
the run folder it writes is one ``mmsft eval`` / ``predict`` / ``export`` / ``runs`` read like any other.

Where files go: ``MMSFT_RUNS_DIR`` (default ``runs/``) gets the data slice, the run and its export.
Thirty optimizer steps on 84 training sentences show the API, not a result (the scores of 18 test
sentences swing widely); ``mmsft train finance_sentiment --adapter lora`` is the real fine-tune.
"""
# %% 0. Imports.  `import mmsft` is cheap: torch and transformers load on the first call that needs them.
import csv
import os
import random
from pathlib import Path

import mmsft
from mmsft.paths import data_root, runs_dir

# %% 1. A tiny slice of real data, written as a CSV of our own (any CSV with a text and a label column works).
# The Financial PhraseBank lines read "sentence@label" (Latin-1); tasks/finance_sentiment.yaml uses the whole file.
source = data_root() / "financial_phrasebank" / "Sentences_50Agree.txt"
rows = [line.rsplit("@", 1) for line in source.read_text(encoding="latin-1").splitlines() if "@" in line]
rng = random.Random(0)
per_label = {label: rng.sample([r for r in rows if r[1] == label], 40) for label in ("negative", "neutral", "positive")}
work = runs_dir() / "quickstart"
work.mkdir(parents=True, exist_ok=True)
with (work / "phrasebank_slice.csv").open("w", newline="", encoding="utf-8") as fh:
    writer = csv.writer(fh)
    writer.writerow(["sentence", "sentiment"])
    writer.writerows(sorted(r for chunk in per_label.values() for r in chunk))  # sorted: the split shuffles with its seed

# %% 2. Register the task from a dict: the same keys as a task YAML (tasks/*.yaml), checked the same way.
# After this, "quickstart_finance" is a task name like the shipped ones (mmsft.tasks.names() lists it).
mmsft.tasks.register({
    "name": "quickstart_finance",
    "kind": "text_classification",
    "data": {"format": "csv", "root": str(work), "files": {"all": "phrasebank_slice.csv"},
             "text_column": "sentence", "label_column": "sentiment", "labels": ["negative", "neutral", "positive"],
             "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}},
    "model": {"backbone": "minilm-l6", "max_length": 64},  # the offline zoo's MiniLM (mmsft models list)
    "metrics": ["accuracy", "f1_macro"],
})

# %% 3. Train: LoRA (adapters/lora.yaml) for 30 steps.  Overrides are the CLI's --set keys, values as Python objects.
# output= names the run folder (it must not exist yet); leave it out for runs/TASK-ADAPTER-TIMESTAMP.
run = mmsft.train("quickstart_finance", adapter="lora",
                  overrides={"train.max_steps": 30, "train.batch_size": 16, "train.lr": 2e-3, "train.threads": 1},
                  output=work / f"run-{os.getpid()}")
print(run)                                   # Run('.../run-1234', finished)
print("test metrics:", run.metrics["test"])  # metrics.json, as `mmsft train` wrote it

# %% 4. Evaluate: what `mmsft eval RUN --split validation` prints.
print("validation:", run.evaluate(split="validation"))

# %% 5. Predict: a list in, one row per text out (label, its probability, every label's probability).
texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "The company's net sales fell by 5%.",
         "The annual general meeting will be held in Helsinki."]
for row in run.predict(texts, batch_size=2):
    print(f"{row['label']:>8} {row['score']:.3f}  {row['input']}")

# %% 6. Reopen the run later, from its folder alone (a new session, another machine with the same files).
again = mmsft.load(run.path)
assert [r["label"] for r in again.predict(texts)] == [r["label"] for r in run.predict(texts)]

# %% 7. Export as a plain Hugging Face folder (LoRA merged; `mmsft export RUN --format hf` does the same) ...
folder = run.export("hf", out=work / f"export-hf-{os.getpid()}")
print("exported to", folder)

# ... which transformers loads with no mmsft code, and which gives the run's own labels.
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
with torch.no_grad():
    logits = model(**tokenizer(texts, truncation=True, padding=True, return_tensors="pt")).logits
labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
print("transformers alone:", labels)
assert labels == [r["label"] for r in run.predict(texts)]
print("quickstart done:", run.path)
