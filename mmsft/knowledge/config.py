"""The ``knowledge`` block of a run config: which KB, how it is injected, retrieved, linked and chunked.

Checked like every block (``mmsft.config.from_dict``: key paths and suggestions); ``check_knowledge``
adds what needs the rest of the config -- the passage budget against ``model.max_length``, the
injections the task kind supports, the modules that read knowledge batch keys, the metrics that
score against passages -- so a bad combination fails before anything is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import UserError, suggest
from ..registry import Registry

MIN_TEXT_TOKENS = 8  # what a passage budget must leave of model.max_length for the sample's own text

#: injections of retrieved knowledge into a sample: name -> the batch keys it provides to modules
KNOWLEDGE_INPUTS: Registry[tuple[str, ...]] = Registry("knowledge input")
KNOWLEDGE_INPUTS.add("retrieved_segments", ())  # top-k passages as <|knowledge|> segments of the input
KNOWLEDGE_INPUTS.add("entity_links", ("knowledge_entities", "knowledge_entity_mask"))  # embeddings of alias-linked entries


@dataclass
class RetrievalSpec:
    method: str = "hybrid"  # see mmsft.knowledge.retrieve.RETRIEVERS: dense, bm25, hybrid
    k: int = 3  # passages per sample
    encoder: str = "minilm-l6"  # zoo text encoder (or local folder) of the dense index
    budget: int = 64  # tokens the passages may take (classification: before the text; generation: the knowledge turn)
    query_max_length: int = 128  # query tokens the dense encoder reads

    def validate(self, path: str) -> None:
        from .retrieve import RETRIEVERS

        if self.method not in RETRIEVERS:
            raise UserError(f"unknown retrieval method '{self.method}'.{suggest(self.method, RETRIEVERS.names())}",
                            where=f"{path}.method", expected="one of: " + ", ".join(RETRIEVERS.names()))
        for name in ("k", "budget", "query_max_length"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}", where=f"{path}.{name}")


@dataclass
class LinkingSpec:
    max_entities: int = 8  # linked entries per sample (entity_links)
    min_chars: int = 4  # shorter aliases are not matched (too ambiguous)
    fill: int = 0  # top up to this many entries with retrieval hits when alias matching finds fewer

    def validate(self, path: str) -> None:
        if self.max_entities < 1 or self.min_chars < 1 or not 0 <= self.fill <= self.max_entities:
            raise UserError("max_entities and min_chars must be >= 1 and fill in [0, max_entities]", where=path)


@dataclass
class ChunkSpec:
    """Documents of a folder KB are cut into passages of ``tokens`` encoder tokens, ``overlap`` shared."""

    tokens: int = 128
    overlap: int = 32

    def validate(self, path: str) -> None:
        if self.tokens < 8 or not 0 <= self.overlap < self.tokens:
            raise UserError(f"chunk tokens must be >= 8 and overlap in [0, tokens), got {self.tokens} / {self.overlap}", where=path)


@dataclass
class KnowledgeSpec:
    kb: str  # a named KB (mmsft kb list) or a path: .jsonl, .csv, or a folder of .txt / .md documents
    inject: list[str] = field(default_factory=lambda: ["retrieved_segments"])  # KNOWLEDGE_INPUTS; inputs modules read are added
    retrieval: RetrievalSpec = field(default_factory=RetrievalSpec)
    linking: LinkingSpec = field(default_factory=LinkingSpec)
    chunk: ChunkSpec = field(default_factory=ChunkSpec)
    index: Optional[str] = None  # dense index folder; default: the cache (a stale one is rebuilt)

    def validate(self, path: str) -> None:
        if not self.kb.strip():
            raise UserError("kb must name a knowledge base", where=f"{path}.kb", expected="a named KB or a path")
        for i, name in enumerate(self.inject):
            if name not in KNOWLEDGE_INPUTS:
                raise UserError(f"unknown knowledge input '{name}'.{suggest(name, KNOWLEDGE_INPUTS.names())}",
                                where=f"{path}.inject[{i}]", expected="one of: " + ", ".join(KNOWLEDGE_INPUTS.names()))
        if len(set(self.inject)) != len(self.inject):
            raise UserError("inject lists an input twice", where=f"{path}.inject")


def module_inputs(cfg) -> list[str]:
    """The knowledge inputs the run's modules read (through their ``batch_keys``)."""
    from ..registry import MODULES

    wanted = {key for m in cfg.model.modules for key in MODULES.get(m.type).batch_keys}
    return [name for name, keys in KNOWLEDGE_INPUTS.items() if wanted & set(keys)]


def active_inputs(cfg) -> list[str]:
    """What the run injects: the configured inputs plus those its modules read."""
    return list(dict.fromkeys([*cfg.knowledge.inject, *module_inputs(cfg)])) if cfg.knowledge else []


def check_knowledge(cfg, kind) -> None:
    """Parse the knowledge block (``cfg.knowledge`` becomes a ``KnowledgeSpec``), then the cross-block
    checks (see the module docstring)."""
    from ..config import from_dict
    from ..metrics import spec as metric_spec

    if cfg.knowledge is not None and not isinstance(cfg.knowledge, KnowledgeSpec):
        cfg.knowledge = from_dict(KnowledgeSpec, cfg.knowledge, "knowledge")

    needs = module_inputs(cfg)
    if needs and cfg.knowledge is None:
        from ..registry import MODULES

        i = next(i for i, m in enumerate(cfg.model.modules) if MODULES.get(m.type).batch_keys)
        raise UserError(f"a module reads knowledge ({', '.join(needs)}) but the run has no knowledge block", where=f"model.modules[{i}]",
                        expected="knowledge: {kb: NAME_OR_PATH, inject: []}")
    names = [n for head in cfg.model.heads.values() for n in (head.metrics if head.metrics is not None else cfg.metrics)]
    for name in names:
        if "knowledge" in metric_spec(name).options and cfg.knowledge is None:
            raise UserError(f"metric '{name}' scores outputs against retrieved passages, but the run has no knowledge block",
                            where="metrics", expected="a knowledge block, or metrics without it")
    if cfg.knowledge is None:
        return
    supported = getattr(kind, "knowledge_inputs", ())
    for name in active_inputs(cfg):
        if name not in supported:
            raise UserError(f"a {kind.name} task cannot inject '{name}'", where="knowledge.inject",
                            expected="one of: " + (", ".join(supported) or "none (this kind takes no knowledge)"))
    budget, limit = cfg.knowledge.retrieval.budget, cfg.model.max_length
    if "retrieved_segments" in active_inputs(cfg) and budget > limit - MIN_TEXT_TOKENS:
        raise UserError(f"retrieval budget {budget} tokens leaves no room for the text within model.max_length={limit}",
                        where="knowledge.retrieval.budget", expected=f"at most {limit - MIN_TEXT_TOKENS} (or a larger model.max_length)")
