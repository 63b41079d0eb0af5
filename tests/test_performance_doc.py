"""docs/performance.md is generated from benchmark runs: each run file carries its CPU, date and command."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402
import make_performance_doc  # noqa: E402


def test_a_saved_run_becomes_a_section_naming_cpu_date_and_command(tmp_path):
    path = common.save_run(tmp_path / "runs" / "toy.json", "toy", "layer  ms\nconv   1.000\n", {"ms": 1.0},
                           notes="a test run")
    run = json.loads(path.read_text())
    assert run["cpu"] and "LLVM" in run["cpu"] and run["date"] and run["command"].startswith("python")
    older = dict(run, date="2000-01-01 00:00 UTC", report="old report")
    (tmp_path / "runs" / "old.json").write_text(json.dumps(older))
    page = make_performance_doc.render(sorted((tmp_path / "runs").glob("*.json")))
    assert page.startswith("# Performance")
    assert page.index(f"## toy, {run['date']}") < page.index("## toy, 2000-01-01")      # newest first
    assert f"- CPU: {run['cpu']}" in page and f"- command: `{run['command']}`" in page
    assert "conv   1.000" in page and "- notes: a test run" in page
    assert common.save_run(None, "toy", "", {}) is None                                # no --json: nothing


def test_a_file_that_is_not_a_run_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": []}))
    with pytest.raises(SystemExit, match="not a benchmark run"):
        make_performance_doc.render([bad])


def test_printed_output_is_kept_and_still_printed(capsys):
    printed = common.StdoutCopy()
    print("row 1")
    assert printed.text() == "row 1\n"
    print("after")
    assert capsys.readouterr().out == "row 1\nafter\n"
