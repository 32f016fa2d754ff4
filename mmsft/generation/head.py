"""The ``lm`` head: token cross-entropy over the backbone's own vocabulary logits.

Labels are ``-100`` on prompt tokens and padding (``mmsft.generation.encoding``); the loss is the
mean over target tokens, and ``tokens`` (their count) lets evaluation report a token-weighted loss.
With labels, a causal LM hands over final states instead of logits and the loss projects them chunk
by chunk (``chunked_loss``); ``mmsft.models.heads.head_logits`` gives the logits to whoever needs them (token-level KD).
"""
from __future__ import annotations

import torch.nn.functional as F

from ..errors import UserError
from ..models.features import FeatureRequest, Features
from ..models.heads import Head
from ..registry import HEADS
from .chunked_loss import chunked_cross_entropy
from .encoding import IGNORE


@HEADS.register("lm")
class LMHead(Head):
    reads = "features"

    def __init__(self, backbone, options=None, label_smoothing: float = 0.0, target: str = "labels"):
        super().__init__(target)
        if backbone.family != "lm":
            raise UserError(f"the lm head needs a causal or seq2seq LM backbone, not a {backbone.family} one", where="model.backbone")
        self.label_smoothing = label_smoothing  # the task's loss.label_smoothing
        self.encoder_decoder = backbone.encoder_decoder

    def request(self, batch: dict) -> FeatureRequest:
        """Causal LMs with left padding: logits from the position before the first label on."""
        labels = batch.get(self.target)
        if labels is None or self.encoder_decoder:
            return FeatureRequest(logits_from=0)
        valid = (labels != IGNORE).any(0)
        first = int(valid.float().argmax()) if bool(valid.any()) else labels.shape[1] - 1
        return FeatureRequest(logits_from=max(first, 1) - 1, logits_as_states=True)

    def forward(self, features: Features, batch: dict) -> dict:
        if features.logits is None:
            return {"logits": None, "states": features.states, "project": features.project}
        return {"logits": features.logits}

    def loss(self, outputs: dict, batch: dict):
        labels = batch.get(self.target)
        if labels is None:
            return None
        logits = outputs["logits"]
        scores = outputs["states"] if logits is None else logits  # per position: final states or vocabulary logits
        if not self.encoder_decoder:  # positions start.. predict tokens start+1..
            start = labels.shape[1] - scores.shape[1]
            scores, labels = scores[:, :-1], labels[:, start + 1:]
        outputs["tokens"] = (labels != IGNORE).sum()
        if logits is None:
            project = outputs["project"]
            return chunked_cross_entropy(scores, labels, project, project.vocab_size, IGNORE, self.label_smoothing)
        return F.cross_entropy(scores.reshape(-1, scores.shape[-1]).float(), labels.reshape(-1),
                               ignore_index=IGNORE, label_smoothing=self.label_smoothing)
