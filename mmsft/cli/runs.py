"""``mmsft runs list|compare|serve``: the run dashboard in the terminal and as a local web page."""
from __future__ import annotations

import json

from .main import command


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


@command("runs", "Run dashboard: list or compare run folders (task, kind, adapter, status, test metrics, train time, "
                 "peak memory, date), or serve them as a local web page.")
def _runs(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    listing = sub.add_parser("list", help="one row per run folder in the runs folder (default action)",
                             description="One row per run folder directly inside the runs folder; a run without "
                                         "metrics.json 'did not finish'.")
    listing.add_argument("--root", metavar="DIR", help="folder of run folders (default: $MMSFT_RUNS_DIR, else ./runs)")
    listing.add_argument("--json", action="store_true", help="print JSON: {root, runs: [summary, ...]}")
    compare = sub.add_parser("compare", help="the same table for the named run folders",
                             description="The run table for the named run folders; a folder that is not a run or an "
                                         "unreadable metrics.json exits 2.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `mmsft train`")
    compare.add_argument("--json", action="store_true", help="print JSON: {runs: [summary, ...]}")
    serve = sub.add_parser("serve", help="a local web page: run table, run pages (config, metrics, curves, figures, "
                                         "generated examples) and a side-by-side compare page",
                           description="Serve the runs folder as a web page (standard library http.server); prints the URL.")
    serve.add_argument("--root", metavar="DIR", help="folder of run folders (default: $MMSFT_RUNS_DIR, else ./runs)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=0, help="port (default: 0, a free one)")
    p.set_defaults(root=None, json=False)

    def run(args):
        from .. import paths
        from ..dashboard import data

        root = args.root or paths.runs_dir()
        if args.action == "serve":
            from ..dashboard.server import serve as serve_runs

            return serve_runs(root, args.host, args.port)
        if args.action == "compare":
            runs = [data.read_run(r) for r in args.runs]
            out = {"runs": runs}
        else:
            runs = data.list_runs(root)
            out = {"root": str(root), "runs": runs}
        if args.json:
            print(json.dumps(out, indent=2, default=str))
        elif not runs:
            print(f"no run folders in {root}")
        else:
            _print_table(*data.table(runs))
        return 0
    p.set_defaults(func=run)
