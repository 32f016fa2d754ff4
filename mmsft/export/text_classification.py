"""Text classification exports: ``BertForSequenceClassification`` (``hf``) and ONNX (``onnx``).

``hf`` maps the composed model onto ``BertForSequenceClassification``, which transformers loads with
no custom code.  BERT's head is ``classifier(tanh(pooler(h_cls)))``; mmsft's head is a linear layer on
a pooled vector, so each pooling gets its own exact construction:

* ``pooler``: BERT's own pooler, kept; the classifier is the head's linear layer (exact).
* ``cls``: the pooler reads the head's logits off ``h_cls`` scaled by ``EPS`` (1e-5), where tanh is the
  identity to ~1e-10 relative; the classifier scales them back (error ~ EPS^2 * logit^3 / 3).
* ``mean`` (MiniLM, a mean-pooled sentence encoder): one **pooling block** is appended to the encoder
  (``num_hidden_layers`` + 1).  Because the head is linear, the mean-pooled logits are the mean of the
  per-token logits ``W h_j + b``.  The block's attention has zero query and key weights, so every head
  attends uniformly to the real (unmasked) tokens -- a masked mean -- and its values are the per-token
  logits, written twice (``+l`` in dims 0..C-1, ``-l`` in C..2C-1).  The residual would add ``h_cls``:
  the last original layer's LayerNorm is scaled by ``DELTA`` (1e-6; values divide it back out), so it
  adds nothing measurable.  Each LayerNorm of the block is made an identity on those dims by a large
  constant pattern (``K`` = 1e4, zero mean) on the other dims that fixes the variance; reading
  ``(+l - -l) / 2`` cancels the mean-removal rounding.  The pooler/classifier read it out as for ``cls``.
  Measured on MiniLM with 77 classes: max |logit difference| ~1e-5 at logit scale ~10.

  What differs: ``last_hidden_state`` of the export is this construction, not sentence embeddings
  (use the run's backbone for those), the weights are float32 constructs (do not load in fp16 / bf16
  or fine-tune the pooling block), and 2C + 2 <= hidden size (192 classes for MiniLM).

The tokenizer is saved with ``model_max_length = model.max_length``: ``tokenizer(text, truncation=True)``
cuts where mmsft does.  Before anything is written, logits are compared with the composed model.

``onnx``: the composed model as a graph of token ids -> logits (``mmsft.compress.onnx_export``), parity
checked in onnxruntime, with the tokenizer files and ``labels.json``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError
from . import Exporter, register_exporter

EPS = 1e-5  # tanh(EPS * x) / EPS == x to ~1e-10 relative for |x| < 100
DELTA = 1e-6  # scale of the last original layer's output inside the pooling block
K = 1e4  # variance-fixing constant of the pooling block's LayerNorms
PROBES = ["The company reported a record profit this quarter.", "Sales fell.", "ok",
          "Operating loss widened to EUR 3.2 mn from EUR 1.1 mn a year earlier, the company said in its interim report.",
          "my card has not arrived yet and I need it for a trip next week", "Patients with chronic renal failure were studied."]


def _head(session):
    name = next(iter(session.cfg.model.heads))
    head = session.model.heads[name]
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    if getattr(head, "reads", None) != "pooled" or len(linears) != 1:
        raise UserError("the classification head has a hidden layer (options.hidden > 0), which BERT's head cannot hold",
                        where=f"model.heads.{name}.options.hidden", expected="hidden: 0 (a linear head) for export --format hf")
    return name, head.pooling, linears[0]


def _bert(session):
    from transformers import BertModel

    bert = session.model.backbone.model
    if not isinstance(bert, BertModel):
        raise UserError(f"export --format hf maps BERT-architecture encoders (MiniLM, BERT), not {type(bert).__name__}",
                        where=session.cfg.model.backbone, expected="a BERT-family backbone, or --format onnx")
    return bert


@torch.no_grad()
def _pooling_block(model, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Turn the last encoder layer of ``model`` (a fresh BertForSequenceClassification whose
    ``num_hidden_layers`` is the backbone's + 1) into the masked-mean pooling block (module docstring)."""
    config = model.config
    d, c = config.hidden_size, weight.shape[0]
    plus, minus = list(range(c)), list(range(c, 2 * c))
    rest = list(range(2 * c, d))[: (d - 2 * c) // 2 * 2]
    pattern = torch.zeros(d)
    pattern[rest[0::2]], pattern[rest[1::2]] = 1.0, -1.0
    gain = K * math.sqrt(len(rest) / d)  # 1 / the LayerNorm's std, which the pattern fixes
    last = model.bert.encoder.layer[-2].output.LayerNorm
    last.weight.mul_(DELTA)
    last.bias.mul_(DELTA)
    block = model.bert.encoder.layer[-1]
    attention = block.attention.self
    for linear in (attention.query, attention.key, attention.value):
        linear.weight.zero_()
        linear.bias.zero_()
    attention.value.weight[plus], attention.value.bias[plus] = weight / DELTA, bias
    attention.value.weight[minus], attention.value.bias[minus] = -weight / DELTA, -bias
    block.attention.output.dense.weight.copy_(torch.eye(d))
    block.attention.output.dense.bias.copy_(K * pattern)
    for linear in (block.intermediate.dense, block.output.dense):
        linear.weight.zero_()
        linear.bias.zero_()
    block.output.dense.bias.copy_(K * pattern)
    for norm in (block.attention.output.LayerNorm, block.output.LayerNorm):
        norm.weight.zero_()
        norm.bias.zero_()
        norm.weight[plus + minus] = gain
    pooler = model.bert.pooler.dense
    pooler.weight.zero_()
    pooler.bias.zero_()
    for i in range(c):
        pooler.weight[i, plus[i]], pooler.weight[i, minus[i]] = EPS / 2, -EPS / 2
    _classifier(model, c)


@torch.no_grad()
def _linear_readout(model, weight, bias) -> None:
    """Pooler = EPS * head on h_cls, classifier = 1 / EPS: the head's logits through tanh's linear range."""
    c = weight.shape[0]
    pooler = model.bert.pooler.dense
    pooler.weight.zero_()
    pooler.bias.zero_()
    pooler.weight[:c], pooler.bias[:c] = EPS * weight, EPS * bias
    _classifier(model, c)


@torch.no_grad()
def _classifier(model, c: int) -> None:
    """Classifier = 1 / EPS on the pooler's first ``c`` units (undoes the EPS scaling of the readout)."""
    model.classifier.weight.zero_()
    model.classifier.bias.zero_()
    model.classifier.weight[:, :c] = torch.eye(c) / EPS


@torch.no_grad()
def to_bert_classifier(session):
    """(BertForSequenceClassification with the run's weights and head, pooling used)."""
    from transformers import BertConfig, BertForSequenceClassification

    bert = _bert(session)
    _, pooling, linear = _head(session)
    weight, bias = linear.weight.detach().float().cpu(), linear.bias.detach().float().cpu()
    labels = list(session.cfg.data.labels)
    config = BertConfig.from_dict(bert.config.to_dict())
    config.architectures = ["BertForSequenceClassification"]
    config.num_labels = len(labels)
    config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
    config.problem_type = "single_label_classification"
    if pooling == "mean":
        if 2 * len(labels) + 2 > config.hidden_size:
            raise UserError(f"{len(labels)} classes do not fit the mean-pooling block of a {config.hidden_size}-wide encoder",
                            where="export --format hf", expected=f"at most {(config.hidden_size - 2) // 2} classes, or --format onnx")
        config.num_hidden_layers += 1
    elif pooling not in ("cls", "pooler"):
        raise UserError(f"pooling '{pooling}' has no BERT classifier equivalent", where="export --format hf",
                        expected="mean, cls or pooler pooling, or --format onnx")
    model = BertForSequenceClassification(config).eval()
    state = {k: v.detach().float().cpu() for k, v in bert.state_dict().items()}
    if pooling == "pooler" and not any(k.startswith("pooler.") for k in state):
        raise UserError("the backbone has no pooler weights", where="export --format hf")
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    block = f"encoder.layer.{config.num_hidden_layers - 1}."
    if unexpected or [k for k in missing if not k.startswith("pooler.") and not (pooling == "mean" and k.startswith(block))]:
        raise UserError(f"the backbone's weights do not fit BertModel ({(unexpected or missing)[0]})", where="export --format hf")
    if pooling == "mean":
        _pooling_block(model, weight, bias)
    elif pooling == "cls":
        _linear_readout(model, weight, bias)
    else:
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
    return model, pooling


def probe_batch(session) -> dict:
    tokenizer = session.processor
    return dict(tokenizer(PROBES, truncation=True, max_length=session.cfg.model.max_length, padding=True, return_tensors="pt"))


@torch.no_grad()
def reference_logits(session, batch: dict) -> torch.Tensor:
    head = next(iter(session.cfg.model.heads))
    device = next(session.model.parameters()).device
    return session.model(**{k: v.to(device) for k, v in batch.items()}, heads=[head])["heads"][head]["logits"].float().cpu()


def check(diff: float, scale: float, what: str) -> None:
    if not diff <= 1e-3 * max(scale, 1.0):
        raise UserError(f"the {what} export differs from the run (max |logit difference| {diff:.2e} at logit scale {scale:.2f})",
                        where="export", expected="a difference within 1e-3 of the logit scale")


@register_exporter
class TextClassificationExporter(Exporter):
    kind = "text_classification"
    formats = ("hf", "onnx")

    def write(self, session, fmt: str, folder: Path) -> dict:
        batch = probe_batch(session)
        ref = reference_logits(session, batch)
        tokenizer = session.processor
        tokenizer.model_max_length = session.cfg.model.max_length
        if fmt == "hf":
            model, pooling = to_bert_classifier(session)
            with torch.no_grad():
                got = model(**batch).logits.float()
            diff, scale = float((got - ref).abs().max()), float(ref.abs().max())
            check(diff, scale, "hf")
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            (folder / "README.md").write_text(_card(session, pooling))
            return {"loads_with": "transformers.AutoModelForSequenceClassification", "pooling": pooling,
                    "pooling_block": pooling == "mean", "max_abs_logit_diff": diff, "logit_scale": scale,
                    "labels": list(session.cfg.data.labels), "max_length": session.cfg.model.max_length}
        from ..compress import onnx_export

        info = onnx_export.export(session.model, session.cfg, batch, folder / "model.onnx")
        parity = onnx_export.parity(session.model, session.cfg, onnx_export.session(folder / "model.onnx"), [batch])
        check(parity["max_abs_diff"], parity["logit_scale"], "onnx")
        tokenizer.save_pretrained(folder)
        import json

        (folder / "labels.json").write_text(json.dumps(list(session.cfg.data.labels)))
        return {"loads_with": "onnxruntime.InferenceSession(model.onnx) + transformers.AutoTokenizer", **info,
                "max_abs_logit_diff": parity["max_abs_diff"], "logit_scale": parity["logit_scale"],
                "labels": list(session.cfg.data.labels), "max_length": session.cfg.model.max_length}


def _card(session, pooling: str) -> str:
    cfg = session.cfg
    how = {"mean": "mean pooling as an appended pooling block (see export.json; float32 only, do not fine-tune it)",
           "cls": "[CLS] pooling through BERT's pooler in its linear range", "pooler": "BERT's pooler"}[pooling]
    return (f"---\nlibrary_name: transformers\npipeline_tag: text-classification\ntags: [mmsft, {cfg.name}]\n---\n\n"
            f"# {cfg.name} ({cfg.adapter_label}), exported by mmsft\n\n"
            "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(FOLDER)\nmodel = AutoModelForSequenceClassification.from_pretrained(FOLDER)\n"
            "logits = model(**tok(['some text'], truncation=True, padding=True, return_tensors='pt')).logits\n```\n\n"
            f"- Labels: {', '.join(cfg.data.labels)}\n- Head: {how}\n- Max length: {cfg.model.max_length} tokens\n"
            f"- `last_hidden_state` is {'the pooling construction, not sentence embeddings' if pooling == 'mean' else 'the encoder output'}\n")
