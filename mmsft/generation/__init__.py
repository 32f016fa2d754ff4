"""Generative SFT building blocks (translation, dialogue) used by the ``generation`` task kind.

* ``tokens``: role/knowledge special tokens, added to the tokenizer with the embedding resized.
* ``templates``: prompt templates in a registry (``plain``, ``chat``, ``role``) rendering a
  conversation into prompt/target segments.
* ``encoding``: segments -> ``input_ids``/``labels`` (prompt masked, EOS closing every target) and
  the left-padding collators.
* ``generate``: batched left-padded generation (greedy or beam) that reports stopping by EOS.
* ``data``: readers for parallel text files, CSV pairs and JSONL conversations.
* ``model``: the ``TaskModel`` wrapping a causal (or seq2seq) LM.
"""
from .templates import TEMPLATES, Segment  # noqa: F401
from .tokens import KNOWLEDGE_TOKEN, ROLE_TOKENS, SPECIAL_TOKENS  # noqa: F401
