"""``image_text_retrieval``: caption <-> image retrieval with a ``matching`` head (contrastive loss).

The text backbone reads captions, the ``image`` tower reads images; a fusion module (late_concat,
gated, cross_attention) scores each pair, or without one the head compares projected vectors
(two towers).  Evaluation scores every caption of the split against every image: Recall@1/5/10 text
-> image and image -> text (chance at R@1: one over the number of images).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import UserError
from ..base import EvalOutput, Prepared, TaskKind, register_kind, single_head
from .batching import Collate, ImageStore, Items, lengths
from .data import SPLITS, ImageTextData, load_splits


def pair_items(rows) -> list[dict]:
    return [{"text": caption, "image": row, "pair_id": row.image_id} for row in rows for caption in row.captions]


@register_kind
class ImageTextRetrieval(TaskKind):
    name = "image_text_retrieval"
    DataSpec = ImageTextData
    metric_inputs = "similarity"
    backbone_family = "text"
    tower_families = {"image": "image"}
    head_types = ("matching",)

    def load_data(self, cfg):
        if "image" not in cfg.model.towers:
            raise UserError("retrieval needs an image tower", where="model.towers", expected="{image: mobilenet-v2} (or another image backbone)")
        return load_splits(cfg.data)

    def data_summary(self, data) -> dict:
        return {s: {"images": len(data[s]), "captions": sum(len(r.captions) for r in data[s])} for s in SPLITS}

    def build_heads(self, cfg, data, backbone, towers=None) -> dict:
        from ...registry import HEADS

        towers = towers or {}
        return {name: HEADS.get(spec.type)(backbone, spec.options, tower_width=towers[spec.options.tower].width)
                for name, spec in cfg.model.heads.items()}

    def prepare(self, cfg, tokenizer, data) -> Prepared:
        collate = Collate(tokenizer, cfg.model.max_length, ImageStore(cfg.data.image_size))
        splits = {s: Items(pair_items(data[s])) for s in SPLITS}
        return Prepared(splits, collate, {s: lengths(splits[s].items, tokenizer) for s in SPLITS}, deterministic_train=False)

    @torch.no_grad()
    def similarity(self, cfg, model, prepared: Prepared, items: list[dict], images: list) -> torch.Tensor:
        """(captions, images) scores of ``items``' captions against ``images``."""
        head = model.heads[single_head(cfg)]
        device = next(model.parameters()).device
        collate, size = prepared.collate, cfg.train.eval_batch_size
        towers = {}
        for start in range(0, len(images), size):
            part = model.tower_features({"pixel_values": collate([{"image": r} for r in images[start:start + size]])["pixel_values"].to(device)})
            for name, feats in part.items():
                towers.setdefault(name, []).append(feats)
        towers = {name: type(parts[0])(maps=[torch.cat([p.maps[-1] for p in parts])]) for name, parts in towers.items()}
        scores = []
        for start in range(0, len(items), size):
            batch = collate([{"text": it["text"]} for it in items[start:start + size]])
            features = model.fuse(model.features({k: v.to(device) for k, v in batch.items()}), towers)
            scores.append(head.pair_scores(features).float().cpu())
        return torch.cat(scores)

    def evaluate(self, cfg, model, prepared: Prepared, split: str, processor=None) -> EvalOutput:
        from ...metrics import compute

        model.eval()
        items = prepared.splits[split].items
        images = list({it["image"].image_id: it["image"] for it in items}.values())
        index = {row.image_id: k for k, row in enumerate(images)}
        refs = [[index[it["pair_id"]]] for it in items]
        scores = self.similarity(cfg, model, prepared, items, images)
        metrics = compute(self.head_metrics(cfg, single_head(cfg)), predictions=scores.tolist(), references=refs)
        metrics["chance_r1_t2i"] = 1 / len(images)
        top = scores.topk(min(3, len(images)), dim=1).indices.tolist()
        return EvalOutput(metrics, top, [r[0] for r in refs], {"images": images, "captions": [it["text"] for it in items]})

    def predict(self, cfg, model, tokenizer, inputs: list[str], out_dir: Path | None = None) -> list[dict]:
        """Captions -> the top 3 test images; image files -> the top 3 test captions."""
        from ...vision.samples import IMAGE_EXTENSIONS, probe_image
        from .data import ImageRow

        model.eval()
        test = load_splits(cfg.data)["test"]
        prepared = self.prepare(cfg, tokenizer, {s: test for s in SPLITS})
        pool = pair_items(test)
        out = []
        for k, text in enumerate(inputs):
            if Path(text).suffix.lower() in IMAGE_EXTENSIONS:
                probe_image(text)
                query = ImageRow(-(k + 1), Path(text), ["?"])  # a fresh id: the image store caches by id
                scores = self.similarity(cfg, model, prepared, pool, [query])[:, 0]
                best = scores.topk(min(3, len(pool))).indices.tolist()
                out.append({"input": text, "captions": [{"caption": pool[i]["text"], "score": round(float(scores[i]), 4)} for i in best]})
            else:
                if not text.strip():
                    raise UserError("empty caption", where=f"input {len(out) + 1}")
                scores = self.similarity(cfg, model, prepared, [{"text": text}], test)[0]
                best = scores.topk(min(3, len(test))).indices.tolist()
                out.append({"input": text, "images": [{"image": str(test[i].path), "score": round(float(scores[i]), 4)} for i in best]})
        return out

    def report_sections(self, cfg, run_dir: Path, test: EvalOutput, data) -> list[str]:
        from .report import retrieval_grid

        retrieval_grid(test, run_dir / "retrieval_grid.png")
        m = test.metrics
        return ["## Retrieval (test)\n",
                f"Recall@1/5/10 text -> image {m['r1_t2i']:.3f} / {m['r5_t2i']:.3f} / {m['r10_t2i']:.3f}, image -> text "
                f"{m['r1_i2t']:.3f} / {m['r5_i2t']:.3f} / {m['r10_i2t']:.3f} (chance at R@1 text -> image: {m['chance_r1_t2i']:.3f}).\n",
                "Query captions with their top-3 images (green frame: the caption's own image):\n\n![retrieval](retrieval_grid.png)\n"]
