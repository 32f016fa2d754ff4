"""The dashboard's pages as strings. Every value read from a run folder goes through ``esc`` (or, on the
index page, the browser's ``textContent``): a task name or a generated text is data, never markup."""
from __future__ import annotations

import html
import math
from urllib.parse import quote

from .data import fmt, numeric_keys, table

STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
pre{background:#f7f7f7;padding:.7em;overflow:auto;max-height:30em}img{max-width:640px;border:1px solid #ddd}
.row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}svg{background:#fff;border:1px solid #ddd}
.bad{color:#a00}a{color:#05c}"""

# Builds the run table from /api/runs (served as /app.js so the page's policy can forbid inline scripts).
APP_JS = """"use strict";
fetch("/api/runs").then(r => r.json()).then(data => {
  const table = document.getElementById("runs"), head = document.createElement("tr");
  for (const name of ["", ...data.columns]) { const th = document.createElement("th"); th.textContent = name; head.appendChild(th); }
  table.appendChild(head);
  data.rows.forEach((row, i) => {
    const tr = document.createElement("tr"), pick = document.createElement("td"), box = document.createElement("input");
    box.type = "checkbox"; box.name = "run"; box.value = data.runs[i].name; pick.appendChild(box); tr.appendChild(pick);
    row.forEach((cell, j) => {
      const td = document.createElement("td");
      if (j === 0) { const a = document.createElement("a"); a.href = "/run/" + encodeURIComponent(cell); a.textContent = cell; td.appendChild(a); }
      else td.textContent = cell;
      if (j === 4 && cell !== "finished") td.className = "bad";
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  document.getElementById("count").textContent = data.rows.length + " run(s) in " + data.root;
}).catch(err => { document.getElementById("count").textContent = "cannot load /api/runs: " + err; });
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, script: str = "") -> str:
    tag = f'<script src="{esc(script)}"></script>' if script else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style></head>'
            f'<body><p><a href="/">all runs</a></p>{body}{tag}</body></html>')


def grid(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def index_page() -> str:
    body = ('<h1>mmsft runs</h1><p id="count">loading…</p><form action="/compare" method="get">'
            '<table id="runs"></table><button type="submit">compare selected</button></form>'
            '<noscript>The run table needs JavaScript; <code>mmsft runs list</code> prints it.</noscript>')
    return page("mmsft runs", body, script="/app.js")


def svg_chart(rows: list[dict], key: str, width: int = 360, height: int = 150, max_points: int = 500) -> str:
    """One metric over steps as an inline SVG line (downsampled to ``max_points``), with its range labelled."""
    points = [(r["step"], r[key]) for r in rows if isinstance(r.get("step"), (int, float)) and isinstance(r.get(key), (int, float))
              and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    if not points:
        return ""
    if len(points) > max_points:
        stride = math.ceil(len(points) / max_points)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad, left = 26, 50  # the left margin holds the value labels

    def xy(x, y):
        return (left + (x - x0) / ((x1 - x0) or 1) * (width - left - pad),
                height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad))
    scaled = [(x, y, *xy(x, y)) for x, y in points]
    line = " ".join(f"{px:.1f},{py:.1f}" for _, _, px, py in scaled)
    dots = "".join(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"><title>step {esc(x)}: {esc(fmt(y))}</title></circle>'
                   for x, y, px, py in scaled) if len(points) <= 60 else ""
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(key)}">'
            f'<text x="{left}" y="16" font-size="12">{esc(key)}</text>'
            f'<text x="2" y="{pad + 4}" font-size="10">{esc(fmt(y1))}</text><text x="2" y="{height - pad}" font-size="10">{esc(fmt(y0))}</text>'
            f'<text x="{left}" y="{height - 8}" font-size="10">step {esc(x0)}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end">{esc(x1)}</text>'
            f'<polyline fill="none" stroke="#05c" stroke-width="1.5" points="{line}"/>{dots}</svg>')


def _img(run: str, name: str) -> str:
    src = f"/file/{quote(run, safe='')}/{quote(name, safe='')}"
    return f'<figure><img src="{esc(src)}" alt="{esc(name)}"><figcaption>{esc(name)}</figcaption></figure>'


def run_page(d: dict) -> str:
    s = d["summary"]
    header, rows = table([s])
    parts = [f"<h1>{esc(s['name'])}</h1>", grid(header, rows), f"<p>backbone: <code>{esc(s['backbone'])}</code></p>"]
    if s["test"]:
        parts += ["<h2>Test metrics</h2>", grid(["metric", "value"], list(s["test"].items()))]
    charts = [svg_chart(d["train"], "loss")] + [svg_chart(d["eval"], k) for k in numeric_keys(d["eval"])]
    if any(charts):
        parts += ["<h2>Training and validation curves</h2>", '<div class="row">' + "".join(charts) + "</div>"]
    if d["eval"]:
        keys = numeric_keys(d["eval"])
        parts += ["<h2>Validation evaluations</h2>",
                  grid(["step", "epoch", *keys], [[r.get("step"), r.get("epoch"), *(r.get(k) for k in keys)] for r in d["eval"][:200]])]
    if d["images"]:
        parts += ["<h2>Figures</h2>", '<div class="row">' + "".join(_img(s["name"], n) for n in d["images"]) + "</div>"]
    if d["examples"]:
        keys = list(dict.fromkeys(k for r in d["examples"] for k in r))[:8]
        cells = [[r.get(k) if isinstance(r.get(k), (str, int, float)) else ("" if r.get(k) is None else str(r.get(k))) for k in keys]
                 for r in d["examples"]]
        parts += [f"<h2>Generated examples (first {len(d['examples'])} of test_predictions.jsonl)</h2>", grid(keys, cells)]
    parts += ["<h2>config.yaml</h2>", f"<pre>{esc(d['config_text'])}</pre>"]
    return page(f"run {s['name']}", "".join(parts))


def compare_page(ds: list[dict], configs: list[dict]) -> str:
    """Runs side by side: one column per run for the table fields, differing config keys, curves and figures."""
    summaries = [d["summary"] for d in ds]
    header, rows = table(summaries)
    links = [f'<a href="/run/{esc(quote(s["name"], safe=""))}">{esc(s["name"])}</a>' for s in summaries]
    out = ['<h1>Compare runs</h1><table><tr><th>field</th>' + "".join(f"<th>{link}</th>" for link in links) + "</tr>"]
    out += ["<tr><th>" + esc(field) + "</th>" + "".join(f"<td>{esc(row[i])}</td>" for row in rows) + "</tr>"
            for i, field in enumerate(header) if i]
    out.append("</table>")
    keys = [k for k in dict.fromkeys(k for c in configs for k in c)
            if k != "output_dir" and len({c.get(k, "-") for c in configs}) > 1]
    if keys:
        out += ["<h2>Config differences</h2>", grid(["key", *(s["name"] for s in summaries)], [[k, *(c.get(k, "-") for c in configs)] for k in keys])]
    elif len(configs) > 1:
        out.append("<p>The configs are the same (apart from the output folder).</p>")
    metrics = list(dict.fromkeys(k for d in ds for k in numeric_keys(d["eval"])))
    for key in metrics:
        out += [f"<h3>validation {esc(key)}</h3>", '<div class="row">' + "".join(
            f"<div>{esc(d['summary']['name'])}<br>{svg_chart(d['eval'], key) or '-'}</div>" for d in ds) + "</div>"]
    names = list(dict.fromkeys(n for d in ds for n in d["images"]))
    for name in names:
        out += [f"<h3>{esc(name)}</h3>", '<div class="row">' + "".join(
            _img(d["summary"]["name"], name) if name in d["images"] else f"<p>{esc(d['summary']['name'])}: none</p>" for d in ds) + "</div>"]
    return page("compare runs", "".join(out))


def message_page(status: int, text: str) -> str:
    return page(f"{status}", f'<h1>{status}</h1><p class="bad">{esc(text)}</p>')
