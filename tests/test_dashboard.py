"""The run dashboard (`mmsft runs list|compare|serve`) on run folders written by hand (no training): the
tables and JSON, one-line errors for bad input, no file outside a run folder served, and the pages as
headless Chromium renders them (the index table is built by the page's JavaScript from /api/runs)."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mmsft.cli.main import main
from mmsft.dashboard.data import fmt
from mmsft.dashboard.server import make_server

EVIL = "<script>alert('x')</script>"


def _config(name: str, kind: str, adapter: str, backbone: str, out: Path) -> dict:
    return {"name": name, "kind": kind, "data": {"root": None}, "domain": "finance", "description": "",
            "model": {"backbone": backbone, "max_length": 128, "heads": {"classification": {"type": "classification"}}},
            "adapters": {adapter: {"method": adapter, "options": {"r": 8}}},
            "train": {"epochs": 2.0, "batch_size": 8, "lr": 5e-4 if adapter == "lora" else 2e-5, "seed": 42},
            "output_dir": str(out)}


def _png(path: Path, color) -> None:
    Image.new("RGB", (24, 16), color).save(path)


def make_run(root: Path, name: str, *, kind="text_classification", task="finance_sentiment", adapter="lora",
             test=None, evals=None, train_seconds=12.34, peak=1534.2, finished=True, examples=None) -> Path:
    """A run folder as `mmsft train` leaves it (config, params, log, report, figures, metrics.json last)."""
    run = root / name
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_config(task, kind, adapter, "minilm-l6", run), sort_keys=False))
    (run / "params.json").write_text(json.dumps({"trainable_params": 5892, "total_params": 22718208}))
    log = [{"type": "train", "step": s, "epoch": (s - 1) // 10, "loss": 1.2 / s, "lr": 1e-3} for s in range(1, 21)]
    first, last = evals or ({"accuracy": 0.7031, "f1_macro": 0.6502}, {"accuracy": 0.7969, "f1_macro": 0.7716})
    log.insert(10, {"type": "eval", "step": 10, "epoch": 1.0, **first})
    log.append({"type": "eval", "step": 20, "epoch": 2.0, **last})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log) + '{"type": "train", "st')  # torn last line
    (run / "report.md").write_text(f"# {task} / {adapter}\n")
    _png(run / "curves.png", (200, 30, 30))
    _png(run / "confusion_matrix.png", (30, 30, 200))
    if examples:
        (run / "test_predictions.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    if finished:
        metrics = {"task": task, "adapter": adapter, "backbone": "minilm-l6", "test": test or {}, "best_validation": 0.7716,
                   "steps": 20, "train_seconds": train_seconds, "samples_per_second": 41.5, "peak_memory_mb": peak,
                   "device": "cpu", "data": {"train": "Dataset(...)"}}
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "finance-lora", test={"accuracy": 0.8125, "f1_macro": 0.7931, "loss": 0.5123}, train_seconds=12.34, peak=1534.2)
    make_run(root, "translation-full", kind="generation", task="translation_en_de", adapter="full",
             test={"bleu": 23.4567, "chrf": 51.25}, evals=({"bleu": 18.51, "chrf": 47.1}, {"bleu": 22.93, "chrf": 50.3}),
             train_seconds=98.7, peak=2048.5,
             examples=[{"source": "Good morning", "reference": "Guten Morgen", "output": f"Guten Morgen {EVIL}"},
                       {"source": "Thank you", "reference": "Danke", "output": "Danke schön"}])
    (root / "notes.txt").write_text("not a run")  # a stray file and a folder that is no run are skipped
    (root / "scratch").mkdir()
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    (root / "finance-lora" / "model" / "heads.png").write_text("TOP-SECRET")  # inside a run, but below it
    return root


def _run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_the_table(runs, capsys):
    code, out, _ = _run_cli(["runs", "list", "--root", str(runs)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["run", "task", "kind", "adapter", "status"]
    assert len(lines) == 3  # header + 2 runs; notes.txt and scratch/ are not runs
    lora = next(line for line in lines if line.startswith("finance-lora"))
    for value in ("finance_sentiment", "text_classification", "lora", "finished", "0.8125", "0.7931", "12.34", "1534.2", "UTC"):
        assert value in lora
    assert "23.4567" in out and "98.7" in out and "2048.5" in out


def test_list_default_root_and_unfinished_run(runs, capsys, monkeypatch):
    make_run(runs, "crashed", finished=False)
    monkeypatch.setenv("MMSFT_RUNS_DIR", str(runs))
    code, out, _ = _run_cli(["runs", "list", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["root"] == str(runs)
    by_name = {r["name"]: r for r in data["runs"]}
    assert sorted(by_name) == ["crashed", "finance-lora", "translation-full"]
    assert by_name["crashed"]["status"] == "did not finish" and by_name["crashed"]["test"] == {}
    lora = by_name["finance-lora"]
    assert lora["status"] == "finished" and lora["test"]["accuracy"] == 0.8125
    assert (lora["task"], lora["kind"], lora["adapter"], lora["train_seconds"], lora["peak_memory_mb"]) == \
        ("finance_sentiment", "text_classification", "lora", 12.34, 1534.2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", lora["date"])


def test_compare_table_and_json(runs, capsys):
    a, b = str(runs / "finance-lora"), str(runs / "translation-full")
    code, out, _ = _run_cli(["runs", "compare", a, b], capsys)
    assert code == 0 and len(out.splitlines()) == 3
    assert "accuracy" in out.splitlines()[0] and "bleu" in out.splitlines()[0]
    code, out, _ = _run_cli(["runs", "compare", b, "--json"], capsys)
    (only,) = json.loads(out)["runs"]
    assert only["kind"] == "generation" and only["test"] == {"bleu": 23.4567, "chrf": 51.25}


@pytest.mark.parametrize("case", ["no_folder", "not_a_run", "torn_metrics", "not_an_object", "no_root"])
def test_bad_input_is_one_line_exit_2(runs, capsys, case):
    run = runs / "finance-lora"
    if case == "torn_metrics":
        (run / "metrics.json").write_text('{"test": {"accuracy": 0.8')
    if case == "not_an_object":
        (run / "metrics.json").write_text("[1, 2]")
    args = {"no_folder": ["runs", "compare", str(runs / "missing")], "not_a_run": ["runs", "compare", str(runs / "scratch")],
            "torn_metrics": ["runs", "compare", str(run)], "not_an_object": ["runs", "compare", str(run)],
            "no_root": ["runs", "list", "--root", str(runs / "missing")]}[case]
    code, out, err = _run_cli(args, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mmsft: error: ")
    assert {"no_folder": "no such folder", "not_a_run": "not a run folder", "torn_metrics": "cannot read metrics.json",
            "not_an_object": "cannot read metrics.json", "no_root": "runs folder not found"}[case] in err


def test_list_shows_a_broken_run_instead_of_failing(runs, capsys):
    (runs / "finance-lora" / "metrics.json").write_text("{not json")
    code, out, _ = _run_cli(["runs", "list", "--root", str(runs)], capsys)
    assert code == 0 and "unreadable: cannot read metrics.json" in out and "translation-full" in out


@pytest.fixture()
def server(runs):
    srv = make_server(runs, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path: str):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    conn.request("GET", path)  # sent as written: http.client does not normalise '..' or '%2F'
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), body


def test_pages_and_api(server, runs):
    status, ctype, body = _get(server, "/api/runs")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert [r["name"] for r in data["runs"]] == ["finance-lora", "translation-full"] and "0.8125" in data["rows"][0]
    status, _, body = _get(server, "/run/finance-lora")
    page = body.decode()
    assert status == 200 and "0.8125" in page and "<svg" in page and "/file/finance-lora/curves.png" in page
    assert "lr: 0.0005" in page  # config.yaml
    assert "0.7969" in page  # the last validation row
    status, _, body = _get(server, "/run/translation-full")
    page = body.decode()
    assert "Guten Morgen" in page and EVIL not in page and html_escaped(EVIL) in page and "22.93" in page
    status, ctype, body = _get(server, "/file/finance-lora/curves.png")
    assert status == 200 and ctype == "image/png" and body == (runs / "finance-lora" / "curves.png").read_bytes()
    status, _, body = _get(server, "/compare?run=finance-lora&run=translation-full")
    page = body.decode()
    assert status == 200 and "Config differences" in page and "23.4567" in page and "0.8125" in page
    assert "<td>train.lr</td><td>0.0005</td><td>2e-05</td>" in page  # config values as written, not rounded
    assert _get(server, "/compare?run=finance-lora&run=nope")[0] == 404


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


@pytest.mark.parametrize("path", [
    "/file/finance-lora/../../secret.txt", "/file/..%2F..%2Fsecret.txt/x.png", "/file/finance-lora/..%2F..%2Fsecret.txt",
    "/file/finance-lora/%2e%2e%2f%2e%2e%2fsecret.txt", "/file/finance-lora/model%2Fheads.png", "/file/../secret.txt",
    "/file/finance-lora/config.yaml", "/file/finance-lora/metrics.json", "/file/%2e%2e/secret.txt", "/file/scratch/x.png",
    "/run/..", "/run/%2e%2e", "/run/scratch", "/run/..%2Fruns%2Ffinance-lora", "/../secret.txt", "/secret.txt",
    "/file/finance-lora/linked.png"])
def test_no_file_outside_a_run_folder_is_served(server, runs, path):
    (runs / "finance-lora" / "linked.png").symlink_to(runs.parent / "secret.txt")  # a link out of the run
    status, _, body = _get(server, path)
    assert status in (403, 404) and b"TOP-SECRET" not in body


def test_cell_format():
    assert [fmt(v) for v in (0.8125, 1 / 3, 2e-05, 0.0, 1534.2, 12, None, "", "x")] == \
        ["0.8125", "0.3333", "2e-05", "0", "1534.2", "12", "-", "-", "x"]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)), None)


def _dump_dom(browser: str, url: str, profile: Path) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_browser_renders_the_dashboard(runs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y chromium; .ci/run installs it)")
    make_run(runs, "zz-markup", task='<b id="injected">x</b>', test={"accuracy": 0.5})  # shown as text, not markup
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mmsft", "runs", "serve", "--root", str(runs), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        base = match.group(0)
        index = _dump_dom(browser, base, tmp_path / "profile")
        # the rows exist only if the browser ran /app.js and it fetched /api/runs
        assert "3 run(s) in" in index
        links = re.findall(r'<a href="(/run/[^"]+)">', index)
        assert links == ["/run/finance-lora", "/run/translation-full", "/run/zz-markup"]
        assert '<b id="injected">' not in index and '&lt;b id="injected"&gt;x&lt;/b&gt;' in index
        assert "0.8125" in index and "1534.2" in index and "23.4567" in index and 'type="checkbox"' in index
        run_page = _dump_dom(browser, base + links[0].lstrip("/"), tmp_path / "profile")
        assert "0.8125" in run_page and "0.7931" in run_page and "0.7969" in run_page and "<svg" in run_page
        compare = _dump_dom(browser, base + "compare?run=finance-lora&run=translation-full", tmp_path / "profile")
        assert "Compare runs" in compare and "0.8125" in compare and "23.4567" in compare
    finally:
        proc.terminate()
        proc.wait(timeout=10)
