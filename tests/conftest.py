"""Shared fixtures: a tiny random BERT (real tokenizer), a tiny CSV task, isolated cache and runs."""
from __future__ import annotations

import os
import random
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's real tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmsft.zoo import resolve

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


POSITIVE = ["great", "excellent", "good", "superb", "profit rose", "strong growth", "record sales"]
NEGATIVE = ["terrible", "awful", "bad", "poor", "loss widened", "sales fell", "weak demand"]


def write_toy_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A learnable two-class CSV (the label is carried by a sentiment word)."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = i % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        filler = " ".join(rng.choice(["the", "company", "said", "quarter", "its", "results", "were"]) for _ in range(rng.randint(2, 12)))
        lines.append(f"{filler} {word} {i},{'pos' if label else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Fresh cache and runs folders per test (the zoo's converted weights stay shared)."""
    monkeypatch.setenv("MMSFT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MMSFT_CACHE", str(tmp_path / "cache"))
    return tmp_path


TOY_TRAIN = "epochs: 2, batch_size: 8, eval_batch_size: 16, lr: 1.0e-3, log_every_steps: 2"


def write_toy_task(folder: Path, backbone: Path, *, rows: int = 120, train: str = TOY_TRAIN, adapter: str | None = None,
                   data_format: str = "csv", files: str = "{all: toy.csv}") -> Path:
    """``folder/toy.yaml`` over a toy CSV in ``folder/data`` on ``backbone``; ``train``: the train mapping's body;
    ``data_format`` / ``files``: the task's ``data.format`` and ``data.files`` (e.g. a table made from that CSV)."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    write_toy_csv(data / "toy.csv", n=rows)
    task = folder / "toy.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: toy
        kind: text_classification
        {f"adapter: {adapter}" if adapter else ""}
        data:
          format: {data_format}
          root: {data}
          files: {files}
          labels: [neg, pos]
          split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 1}}
        model: {{backbone: {backbone}, max_length: 32}}
        metrics: [accuracy, f1_macro]
        train: {{{train}}}
        """))
    return task


@pytest.fixture
def toy_task(tmp_path, tiny_bert, isolated) -> Path:
    """A task YAML over a toy CSV in tmp_path, on the tiny BERT; returns the YAML path."""
    return write_toy_task(tmp_path, tiny_bert)
