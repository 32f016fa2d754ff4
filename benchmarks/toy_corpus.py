"""A toy English-German corpus ("the cat sees the dog" / "die Katze sieht die Hund") for tiny-model checks.

Shared by the test fixtures (tests/gen_fixtures.py) and the GPU check's generation step (gpu_plan.py);
kept free of pytest so the GPU machine can import it.
"""
from __future__ import annotations

import random
from pathlib import Path

WORDS = {"cat": "Katze", "dog": "Hund", "man": "Mann", "woman": "Frau", "child": "Kind", "house": "Haus"}
VERBS = {"sees": "sieht", "likes": "mag", "has": "hat"}


def write_parallel(folder: Path, name: str, n: int, seed: int) -> tuple[list[str], list[str]]:
    """``folder/name.en`` and ``folder/name.de``, ``n`` line-aligned pairs drawn with ``seed``."""
    rng = random.Random(seed)
    en, de = [], []
    for _ in range(n):
        a, b = rng.sample(list(WORDS), 2)
        v = rng.choice(list(VERBS))
        en.append(f"the {a} {v} the {b}")
        de.append(f"die {WORDS[a]} {VERBS[v]} die {WORDS[b]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.en").write_text("\n".join(en) + "\n")
    (folder / f"{name}.de").write_text("\n".join(de) + "\n")
    return en, de
