"""``mmsft export RUN --format hf|onnx [--out DIR]`` (mmsft.export)."""
from __future__ import annotations

import json

from .main import command


@command("export", "Export a trained run as a folder the ecosystem loads without mmsft: --format hf (transformers "
                   "AutoModelForSequenceClassification / AutoModelForCausalLM; torchvision for detection) or onnx.")
def _export(p):
    p.add_argument("run", help="run folder written by `mmsft train`")
    p.add_argument("--format", default="hf", choices=["hf", "onnx"], help="hf (default) or onnx (text classification)")
    p.add_argument("--out", metavar="DIR", help="a new folder (default: RUN/export-FORMAT)")

    def run(args):
        from ..export import export_run

        folder = export_run(args.run, args.format, args.out)
        record = json.loads((folder / "export.json").read_text())
        print(json.dumps({"export": str(folder), **{k: record[k] for k in ("format", "kind", "loads_with") if k in record},
                          **{k: v for k, v in record.items() if k.startswith("max_abs")}}, indent=2))
    p.set_defaults(func=run)
