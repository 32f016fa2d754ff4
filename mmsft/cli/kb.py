"""``mmsft kb build|search|list``: a knowledge base's dense index, and what retrieval finds in it."""
from __future__ import annotations

import json
import time

from .main import command


def _common(p) -> None:
    p.add_argument("kb", help="a named KB (see `mmsft kb list`) or a path: .jsonl / .csv entries, or a folder of .txt / .md documents")
    p.add_argument("--encoder", default="minilm-l6", help="zoo text encoder (or local folder) of the dense index (default minilm-l6)")
    p.add_argument("--index", metavar="DIR", help="index folder (default: the cache, rebuilt there when stale)")
    p.add_argument("--task", help="the task whose training rows a derived KB (task_labels, task_replies) is built from; its "
                                  "validation/test rows are kept out of reach")
    p.add_argument("--chunk-tokens", type=int, default=128, help="folder KBs: passage length in encoder tokens (default 128)")
    p.add_argument("--chunk-overlap", type=int, default=32, help="folder KBs: tokens shared by neighbouring passages (default 32)")


def _open(args, method: str = "dense", k: int = 5):
    """(TaskKnowledge for the arguments, the task's config or None)."""
    from ..config import from_dict
    from ..knowledge.config import KnowledgeSpec
    from ..knowledge.inject import TaskKnowledge

    spec = from_dict(KnowledgeSpec, {"kb": args.kb, "index": args.index, "retrieval": {"method": method, "k": k, "encoder": args.encoder},
                                     "chunk": {"tokens": args.chunk_tokens, "overlap": args.chunk_overlap}}, "kb")
    rows, name = None, ""
    if args.task:
        from ..registry import KINDS
        from ..spec import build_run_config

        cfg = build_run_config(args.task)
        kind = KINDS.get(cfg.kind)
        rows, name = kind.knowledge_rows(cfg, kind.load_data(cfg)), cfg.name
    return TaskKnowledge(spec, rows, name)


@command("kb", "Build a knowledge base's dense index, search a KB, or list the named KBs.")
def _kb(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    build = sub.add_parser("build", help="build (or check) the dense index of a KB: embeddings (safetensors), ids, encoder, content hash",
                           description="Encode every entry with the encoder and write the index folder atomically. A current index is "
                                       "kept; a stale one (the KB changed) is rebuilt; one built with another encoder is an error "
                                       "unless --replace.")
    _common(build)
    build.add_argument("--replace", action="store_true", help="rebuild even when current, or when the folder holds another encoder's index")
    search = sub.add_parser("search", help="print the top-k hits of a query with their scores",
                            description="Retrieve from a KB the way training does (dense, bm25 or hybrid).")
    _common(search)
    search.add_argument("query", help="the query text")
    search.add_argument("-k", type=int, default=5, help="hits to print (default 5)")
    search.add_argument("--method", default="hybrid", help="dense, bm25 or hybrid (default hybrid)")
    search.add_argument("--json", action="store_true", help="one JSON object per hit instead of text lines")
    sub.add_parser("list", help="the named KBs and where they come from")

    def run(args):
        if args.action == "list":
            from ..knowledge.named import NAMED_KBS

            for name, entry in NAMED_KBS.items():
                print(f"{name:20s} {'standalone' if entry.standalone else 'from a task':12s} {entry.description}")
            return 0
        if args.action == "build":
            return _build(args)
        if args.action == "search":
            return _search(args)
        p.print_help()
        return 2
    p.set_defaults(func=run)


def _build(args) -> int:
    from ..knowledge.index import build_index, default_folder, load_index

    know = _open(args)
    tick = time.perf_counter()
    if args.replace:
        index = build_index(know.kb, args.encoder, args.index or default_folder(know.kb, args.encoder))
    else:
        index = load_index(know.kb, args.encoder, args.index)  # a current index is kept, a stale one rebuilt
    print(json.dumps({"index": str(index.folder), "kb": know.kb.name, "entries": len(know.kb), "encoder": args.encoder,
                      "dim": index.meta["dim"], "content_hash": index.meta["content_hash"][:16], "rebuilt": index.rebuilt,
                      "build_seconds": index.meta["build_seconds"], "seconds": round(time.perf_counter() - tick, 2)}, indent=2))
    return 0


def _search(args) -> int:
    from ..errors import UserError

    if args.k < 1:
        raise UserError(f"-k must be >= 1, got {args.k}", where="command line")
    know = _open(args, args.method, args.k)
    hits = know.search([{"text": args.query, "source": "query"}], args.k, cache=False)[0]
    for rank, hit in enumerate(hits, 1):
        entry = know.kb.entries[hit.index]
        if args.json:
            print(json.dumps({"rank": rank, "score": hit.score, "id": hit.id, "passage": entry.passage, "fields": entry.fields},
                             ensure_ascii=False, default=str))
        else:
            print(f"{rank:2d}. {hit.score:8.4f}  {hit.id}  {entry.passage[:160]}")
    if not hits:
        print("no hits")
    print(f"({args.method}, {know.retriever.ms_per_query:.1f} ms per query, KB {know.kb.name}: {len(know.kb):,} entries)")
    return 0
