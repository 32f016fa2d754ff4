"""Fixtures for the distill / merge / compress tests: a 3-layer, 4-head tiny BERT (MiniLM's real
tokenizer), the toy CSV task on it, and trained toy runs shared by a test module.

Imported by tests/test_distill.py, test_merge.py and test_compress.py (``from derive_fixtures import *``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import write_toy_csv


@pytest.fixture(scope="session")
def tiny_bert4(tmp_path_factory, tiny_bert) -> Path:
    """conftest's tiny BERT with 3 blocks of 4 heads (of 8): enough structure to prune heads and drop blocks."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert4")
    config = BertConfig.from_pretrained(tiny_bert)
    config.num_hidden_layers, config.num_attention_heads = 3, 4
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


def toy_task_yaml(folder: Path, backbone: Path, name: str = "toy", labels: tuple[str, str] = ("neg", "pos"), extra: str = "") -> Path:
    """The conftest toy task (label carried by a sentiment word) written into ``folder``."""
    data = folder / f"data-{name}"
    data.mkdir(parents=True, exist_ok=True)
    csv = write_toy_csv(data / "toy.csv")
    if labels != ("neg", "pos"):
        csv.write_text(csv.read_text().replace(",neg\n", f",{labels[0]}\n").replace(",pos\n", f",{labels[1]}\n"))
    task = folder / f"{name}.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: {name}
        kind: text_classification
        data:
          format: csv
          root: {data}
          files: {{all: toy.csv}}
          labels: [{labels[0]}, {labels[1]}]
          split: {{train: 0.6, validation: 0.2, test: 0.2, seed: 1}}
        model: {{backbone: {backbone}, max_length: 32}}
        metrics: [accuracy, f1_macro]
        train: {{epochs: 2, batch_size: 8, eval_batch_size: 16, lr: 1.0e-3, log_every_steps: 2}}
        """) + extra)
    return task


@pytest.fixture(scope="module")
def derive_env(tmp_path_factory):
    """Cache and runs folders for a whole test module (trained runs are shared between its tests)."""
    root = tmp_path_factory.mktemp("derive")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_RUNS_DIR", str(root / "runs"))
        mp.setenv("MMSFT_CACHE", str(root / "cache"))
        yield root


def train_toy(task: Path, out: Path, adapter: str = "full", overrides: list[str] = ()) -> Path:
    from mmsft.pipeline import train
    from mmsft.spec import build_run_config

    return train(build_run_config(str(task), adapter, list(overrides)), out)
