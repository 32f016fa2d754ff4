"""``mmsft runs serve``: the dashboard over ``http.server`` (nothing to install, local by default).

Only GET; the only files served are images directly inside a run folder of the root (``data.run_file``),
so a ``..``, an encoded separator or a symlink out of a run answers 404.
"""
from __future__ import annotations

import errno
import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import UserError
from . import data, html

POLICY = ("default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; style-src 'unsafe-inline'; "
          "form-action 'self'; base-uri 'none'")


class Handler(BaseHTTPRequestHandler):
    root: Path = Path("runs")  # set per server by make_server
    server_version = "mmsft-dashboard"

    def log_message(self, format, *args):  # quiet: the terminal shows the URL, not every image request
        pass

    def do_GET(self):
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except UserError as exc:  # e.g. the runs folder went away under the server
            self._html(html.message_page(404, str(exc)), 404)
        except Exception as exc:  # one bad run folder must not take the server down
            self._html(html.message_page(500, f"{type(exc).__name__}: {exc}"), 500)

    def do_HEAD(self):
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")  # a run that finishes shows up on reload
        self.end_headers()
        self.wfile.write(body)

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _missing(self, what: str) -> None:
        self._html(html.message_page(404, what), 404)

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")[1:]  # split before unquoting: an encoded '/' stays inside one part
        names = [unquote(p) for p in parts]
        if url.path == "/":
            self._html(html.index_page())
        elif url.path == "/app.js":
            self._send(200, html.APP_JS.encode(), "text/javascript; charset=utf-8")
        elif url.path == "/api/runs":
            runs = data.list_runs(self.root)
            header, rows = data.table(runs)
            body = json.dumps({"root": str(self.root), "columns": header, "rows": rows, "runs": runs}, default=str)
            self._send(200, body.encode(), "application/json")
        elif len(names) == 2 and names[0] == "run":
            folder = data.run_in_root(self.root, names[1])
            if folder is None:
                return self._missing(f"no run folder {names[1]!r} in the runs folder")
            self._html(html.run_page(data.details(folder)))
        elif url.path == "/compare":
            wanted = parse_qs(url.query).get("run", [])
            folders = [data.run_in_root(self.root, n) for n in wanted]
            if not wanted or None in folders:
                return self._missing("pick runs to compare: /compare?run=A&run=B (names of run folders in the runs folder)")
            self._html(html.compare_page([data.details(f) for f in folders], [data.flat_config(f) for f in folders]))
        elif len(names) == 3 and names[0] == "file":
            path = data.run_file(self.root, names[1], names[2])
            if path is None:
                return self._missing("no such image in a run folder")
            self._send(200, path.read_bytes(), data.IMAGE_TYPES[path.suffix.lower()])
        else:
            self._missing("no such page")


def make_server(root, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the run folders in ``root`` (port 0: a free one); the caller runs ``serve_forever``."""
    base = Path(root).expanduser()
    data.list_runs(base)  # a missing root fails here, with one line, not on the first request
    handler = type("RunsHandler", (Handler,), {"root": base})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", where="command line") from None
        raise
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}/"


def serve(root, host: str = "127.0.0.1", port: int = 0) -> int:
    server = make_server(root, host, port)
    print(f"mmsft: serving the runs in {Path(root).expanduser()} at {url_of(server)} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("mmsft: dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
