"""Run the data checks on a task and write the report folder (report.md, PNGs, check.json).

Sections (all on by default, ``skip`` turns some off):
  duplicates  exact / near duplicates, cross-split leakage, nested files, conflicting labels
  lengths     token lengths in the task's tokenizer, share truncated at max_length (text)
  balance     per-class counts per split (detection: boxes per class) and box statistics
  noise       label-noise suspects on frozen embeddings (text; embeds the training rows once)
  diversity   distinct-n, embedding spread and cluster coverage (text), distinct images (image)
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..errors import UserError, suggest
from .views import QCData

SECTIONS = ("duplicates", "lengths", "balance", "noise", "diversity")


def parse_sections(skip: Iterable[str] = ()) -> list[str]:
    skip = [s.strip() for s in skip if s.strip()]
    for name in skip:
        if name not in SECTIONS:
            raise UserError(f"unknown check section '{name}'.{suggest(name, SECTIONS)}", where="--skip", expected="one of: " + ", ".join(SECTIONS))
    return [s for s in SECTIONS if s not in skip]


def run_checks(data: QCData, sections: Iterable[str] = SECTIONS, embed_backbone: str = "minilm-l6", folds: int = 5) -> dict:
    """All findings as one dict (private ``_`` keys hold item ids / arrays for ``--fix`` and charts)."""
    from . import diversity, duplicates, stats

    sections = list(sections)
    results: dict = {"task": data.task, "kind": data.kind, "modality": data.modality, "rows": len(data.items),
                     "splits": {s: len(data.by_split(s)) for s in data.splits()}, "files": data.files, "cleaning": data.cleaning,
                     "sections": sections, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "duplicates" in sections:
        results["duplicates"] = duplicates.analyse(data)
    if data.modality == "text" and "lengths" in sections:
        lengths = stats.token_lengths(data)
        results["lengths"] = {**stats.length_stats(data, lengths), "_values": lengths}
    if "balance" in sections:
        results["balance"] = stats.class_balance(data)
        if any("boxes" in it.extra for it in data.items):
            results["detection"] = stats.detection_stats(data)
    embeddings = None
    if data.modality == "text" and "noise" in sections:
        from .noise import find_label_noise

        results["noise"] = find_label_noise(data, embed_backbone, folds=folds, max_listed=100_000)
        embeddings = results["noise"].get("_embeddings")
    if "diversity" in sections:
        div: dict = {}
        if data.modality == "text":
            div["text"] = diversity.text_diversity(data)
            ids = results.get("noise", {}).get("_items")
            if embeddings is None:
                from .embed import embed_texts
                from .noise import pool_items

                items = pool_items(data)
                ids, texts = [it.id for it in items], [it.text for it in items]
                unique = list(dict.fromkeys(texts))
                row = {t: i for i, t in enumerate(unique)}
                embeddings = embed_texts(unique, embed_backbone, data.max_length or 128, desc="embed (diversity)")[[row[t] for t in texts]]
            if ids is not None and len(ids) >= 4:
                div["embedding"] = diversity.embedding_diversity(data, ids, np.asarray(embeddings))
            div["dialogue"] = diversity.dialogue_stats(data)
        else:
            div["image"] = diversity.image_diversity(data)
        results["diversity"] = div
    return results


def check_out_dir(out_dir: Path) -> None:
    """A report folder may be new, empty, or an earlier report (replaced); anything else is refused."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "check.json").is_file())):
        raise UserError("report folder exists and is not an earlier data-check report", where=str(out_dir),
                        expected="a new or empty folder (--out)")


def write_report(data: QCData, results: dict, out_dir: Path, command: str = "") -> Path:
    """Write report.md, check.json and charts into ``out_dir`` (built in a temp folder, then swapped in)."""
    import json

    from . import report
    from .verdicts import make_verdicts

    verdicts = make_verdicts(data, results)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    images = []
    if "balance" in results:
        report.balance_png(results["balance"], data.labels, tmp / "class_balance.png")
        images.append("class_balance.png")
    if "lengths" in results:
        report.lengths_png(data, results["lengths"]["_values"], tmp / "lengths.png")
        images.append("lengths.png")
    if "detection" in results:
        report.detection_png(results["detection"], tmp / "boxes.png")
        images.append("boxes.png")
    (tmp / "report.md").write_text(report.markdown(data, results, verdicts, images, command))
    (tmp / "check.json").write_text(json.dumps(report.jsonable({"verdicts": verdicts, **results}), indent=1, ensure_ascii=False) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def check_task(cfg, out_dir: Optional[Path] = None, skip: Iterable[str] = (), fix_out: Optional[Path] = None,
               command: str = "") -> tuple[Path, dict]:
    """Build the task's raw view, run the checks, write the report (and the cleaned copy)."""
    from .. import paths
    from .views import build_view

    sections = parse_sections(skip)
    if fix_out is not None:
        from .fix import check_fix_target

        if "duplicates" not in sections:
            raise UserError("--fix needs the duplicates section", where="--skip", expected="duplicates not skipped")
        check_fix_target(Path(fix_out), cfg)
    out_dir = Path(out_dir) if out_dir else paths.runs_dir() / f"data-check-{cfg.name}"
    check_out_dir(out_dir)
    data = build_view(cfg)
    results = run_checks(data, sections)
    write_report(data, results, out_dir, command)
    if fix_out is not None:
        from .fix import write_fixed

        write_fixed(cfg, data, results, Path(fix_out))
    return out_dir, results
