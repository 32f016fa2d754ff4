"""Knowledge injection: external knowledge bases used at training and at inference.

``kb`` (entries and formats) and ``named`` (ICD-10-CM, Loughran-McDonald, BANKING77 intents, KBs
derived from a task's training rows) load a KB; ``index`` builds and checks its dense index;
``retrieve`` searches it (dense / BM25 / hybrid); ``linking`` finds its entries' aliases in a text;
``leakage`` keeps held-out rows out and training rows from retrieving themselves; ``inject`` is one
run's view of all of it for the task kinds; ``objectives`` are what a knowledge adapter learns from a
KB alone; ``config`` is the run config's ``knowledge`` block.  The modules that consume knowledge
(``knowledge_adapter``, ``entity_memory``) live with the other modules in ``mmsft.models.modules``.

This package imports only the bottom layer and ``data`` (models, kinds and the CLI import it).
"""
from .config import KNOWLEDGE_INPUTS, KnowledgeSpec, active_inputs, check_knowledge  # noqa: F401
