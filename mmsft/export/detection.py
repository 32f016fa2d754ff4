"""Detection exports (``hf``): a torchvision detector's state dict + ``config.json`` + ``load_torchvision.py``.

Why it maps exactly: mmsft's detection head *is* a torchvision FCOS / RetinaNet / SSD / Faster R-CNN
whose own backbone is a placeholder; mmsft's trunk (a torchvision classifier's stages) and its ``fpn``
neck (torchvision's ``FeaturePyramidNetwork``; the two extra levels are ``LastLevelP6P7``) produce the
features.  The export puts the same modules into torchvision's own composition --
``Detector(BackboneWithFPN(trunk, return_layers, ...))`` -- and renames the weights; torchvision's
transform is told to normalise with the trunk's mean / std and not to resize (the caller letterboxes
as mmsft does; ``load_torchvision.py`` does it).  ``load_state_dict(strict=True)`` checks that every
weight found its place, and detections on probe images are compared with the run's before anything
is written.

Not exported: timm trunks (``efficientnet-lite0``: torchvision has no such model), the ``project`` neck
and ``extra_levels: 1`` (no torchvision module computes them).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..errors import UserError
from . import Exporter, register_exporter
from . import torchvision_loader as loader

ZOO_TORCHVISION = {"mobilenet-v2": "mobilenet_v2"}


def torchvision_name(name: str) -> str:
    if name in ZOO_TORCHVISION:
        return ZOO_TORCHVISION[name]
    if name.startswith("torchvision:"):
        return name.split(":", 1)[1]
    raise UserError(f"backbone '{name}' is not a torchvision model, so torchvision alone cannot rebuild it",
                    where="model.backbone", expected="mobilenet-v2 or torchvision:<name> (timm trunks such as efficientnet-lite0 do not export)")


def trunk_layout(backbone) -> tuple[str, dict[str, str], dict[str, str]]:
    """(container attribute or "", {child: output name} of the used stages, {mmsft key prefix: torchvision prefix})."""
    pieces = [(i, name) for i, stage in enumerate(backbone.model.stages) for name, _ in stage.named_children()]
    containers = {name.split("_", 1)[0] if "_" in name and name.split("_", 1)[1].isdigit() else "" for _, name in pieces}
    if len(containers) != 1:
        raise UserError("the trunk's layers do not come from one torchvision module", where="model.backbone")
    container = containers.pop()
    child = (lambda n: n.split("_", 1)[1]) if container else (lambda n: n)
    last_of = {}
    for i, name in pieces:
        last_of[i] = child(name)
    returns = {last_of[i]: str(k) for k, i in enumerate(backbone.out_indices)}
    prefixes = {f"backbone.model.stages.{i}.{name}.": f"backbone.body.{child(name)}." for i, name in pieces}
    return container, returns, prefixes


def config_for(session) -> dict:
    cfg, model = session.cfg, session.model
    name = next(iter(cfg.model.heads))
    head, opts = model.heads[name], cfg.model.heads[name].options
    if opts.neck != "fpn" or opts.extra_levels not in (0, 2):
        raise UserError(f"neck '{opts.neck}' with extra_levels {opts.extra_levels} has no torchvision equivalent",
                        where=f"model.heads.{name}.options", expected="neck: fpn with extra_levels 0 or 2")
    backbone = model.backbone
    container, returns, _ = trunk_layout(backbone)
    level_strides = list(opts.strides) + [opts.strides[-1] * 2 ** (i + 1) for i in range(opts.extra_levels)]
    return {"format": "mmsft-torchvision-detector/1", "arch": head.arch_name, "num_classes": head.num_classes,
            "class_names": list(cfg.data.class_names), "label_offset": head.arch.label_offset,
            "image_size": cfg.data.image_size, "resize": cfg.data.resize, "pad_fill": _pad_fill(),
            "image_mean": backbone.mean.flatten().tolist(), "image_std": backbone.std.flatten().tolist(),
            "trunk": {"torchvision_model": torchvision_name(cfg.model.backbone), "module": container, "return_layers": returns,
                      "in_channels": [backbone.channels[i] for i in backbone.out_indices]},
            "strides": list(opts.strides), "level_strides": level_strides, "channels": opts.channels,
            "extra_levels": opts.extra_levels, "head_convs": opts.head_convs, "score_thresh": opts.score_thresh,
            "nms_thresh": opts.nms_thresh, "detections_per_img": opts.detections_per_img,
            "predict_score_thresh": opts.predict_score_thresh}


def _pad_fill() -> int:
    from ..vision.transforms import PAD_FILL

    return PAD_FILL


def state_dict(session, config: dict) -> dict[str, torch.Tensor]:
    """The composed model's weights under the torchvision detector's names."""
    model = session.model
    name = next(iter(session.cfg.model.heads))
    _, _, prefixes = trunk_layout(model.backbone)
    out = {}
    for key, value in model.state_dict().items():
        new = None
        for old, tv in prefixes.items():
            if key.startswith(old):
                new = tv + key[len(old):]
        head = f"heads.{name}."
        if key.startswith(head + "neck.fpn."):
            new = "backbone.fpn." + key[len(head + "neck.fpn."):].replace("extra_blocks.convs.0.", "extra_blocks.p6.") \
                .replace("extra_blocks.convs.1.", "extra_blocks.p7.")
        elif key.startswith(head + "detector."):
            new = key[len(head + "detector."):]
        if new is not None:
            out[new] = value.detach().float().contiguous().cpu() if value.is_floating_point() else value.detach().contiguous().cpu()
    return out


def probe_images(folder: Path) -> list[Path]:
    """Two synthetic images (landscape and portrait: both letterbox paddings) for the parity check."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(320, 200), (180, 260)]):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h)], -1)
        noise = rng.integers(0, 60, (h, w, 3))
        path = folder / f"probe{i}.png"
        Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8")).save(path)
        paths.append(path)
    return paths


@register_exporter
class DetectionExporter(Exporter):
    kind = "detection"
    formats = ("hf",)

    def write(self, session, fmt: str, folder: Path) -> dict:
        import json
        import tempfile

        from safetensors.torch import save_file

        from ..vision.inference import detect_files

        config = config_for(session)
        detector = loader.build(config)
        detector.load_state_dict(state_dict(session, config), strict=True)
        detector.eval()
        head = next(iter(session.cfg.model.heads))
        with tempfile.TemporaryDirectory(prefix="mmsft-export-probe-") as tmp:
            paths = probe_images(Path(tmp))
            ours = detect_files(session.model, head, paths, config["image_size"], config["resize"])
            theirs = loader.detect(detector, config, paths)
        worst = 0.0
        for a, b in zip(ours, theirs):
            if a["boxes"].shape != b["boxes"].shape or not torch.equal(a["labels"], b["labels"]):
                raise UserError(f"the torchvision detector finds {len(b['boxes'])} boxes where the run finds {len(a['boxes'])}",
                                where="export --format hf")
            if len(a["boxes"]):
                worst = max(worst, float((a["boxes"] - b["boxes"]).abs().max()), float((a["scores"] - b["scores"]).abs().max()))
        if worst > 1e-2:
            raise UserError(f"the torchvision detector differs from the run (max difference {worst:.3g})", where="export --format hf")
        save_file(detector.state_dict(), str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        shutil.copy2(loader.__file__, folder / "load_torchvision.py")
        (folder / "README.md").write_text(
            f"# {session.cfg.name} ({session.cfg.adapter_label}): a torchvision {config['arch']} detector, exported by mmsft\n\n"
            "```python\nimport sys; sys.path.insert(0, FOLDER)\nfrom load_torchvision import load, predict\n"
            "model, config = load(FOLDER)\nprint(predict(model, config, ['image.jpg']))\n```\n\n"
            f"Classes: {', '.join(config['class_names'])}. Inputs: RGB letterboxed to {config['image_size']} px "
            "(see load_torchvision.py); boxes come back in the original image's pixels.\n")
        return {"loads_with": "torchvision + safetensors (load_torchvision.py)", "arch": config["arch"],
                "probe_detections": sum(len(a["boxes"]) for a in ours), "max_abs_diff": worst}
