"""Fixtures for the generation tests: tiny random causal LM / T5 with SmolLM2's real tokenizer, toy data.

Imported by tests/test_generation*.py (``from gen_fixtures import *``).
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from toy_corpus import VERBS, WORDS, write_parallel  # noqa: E402,F401  (one toy corpus for tests and the GPU check)


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder in the default cache (converted once, ~40 s, if missing)."""
    from mmsft.errors import UserError
    from mmsft.zoo import resolve

    try:
        return Path(resolve("smollm2-135m").path)
    except UserError as exc:  # package not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def smol_path() -> Path:
    return smollm2_folder()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smol_path) -> Path:
    """2-layer, 32-wide Llama (tied embeddings) with random weights and SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(smol_path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, smol_path) -> Path:
    """A 1+1-layer T5 (an encoder-decoder, loaded with AutoModelForSeq2SeqLM) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    tok = AutoTokenizer.from_pretrained(smol_path)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smol_tok(smol_path):
    from transformers import AutoTokenizer

    from mmsft.generation.tokens import add_special_tokens

    tok = AutoTokenizer.from_pretrained(smol_path)
    add_special_tokens(tok)
    return tok


def toy_mt_yaml(tmp_path: Path, backbone: Path, extra: str = "", n_train: int = 48) -> Path:
    data = tmp_path / "data"
    write_parallel(data, "train", n_train, 0)
    write_parallel(data, "val", 8, 1)
    write_parallel(data, "test", 8, 2)
    task = tmp_path / "toy_mt.yaml"
    task.write_text(textwrap.dedent(f"""\
        name: toy_mt
        kind: generation
        data:
          format: parallel
          root: {data}
          files: {{train: "train.{{lang}}", validation: "val.{{lang}}", test: "test.{{lang}}"}}
          prompt: "Translate {{source_language}} to {{target_language}}: {{source}}"
          generate: {{max_new_tokens: 8, batch_size: 4}}
        model: {{backbone: {backbone}, max_length: 64}}
        metrics: [bleu, chrf, rouge_l, exact_match, eos_rate, length_ratio]
        train: {{epochs: 1, batch_size: 8, eval_batch_size: 8, lr: 1.0e-2, log_every_steps: 1}}
        """) + extra)
    return task


@pytest.fixture
def toy_mt(tmp_path, tiny_llama, isolated) -> Path:
    return toy_mt_yaml(tmp_path, tiny_llama)
