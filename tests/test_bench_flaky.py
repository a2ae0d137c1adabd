"""bench/flaky.py: the suite N times beside busy loops, failures counted per test."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _flaky():
    spec = importlib.util.spec_from_file_location("bench_flaky", REPO / "bench" / "flaky.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_failed_tests_reads_failures_and_errors_from_junit_xml(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text('<testsuites><testsuite name="pytest">'
                      '<testcase classname="tests.a" name="test_ok"/>'
                      '<testcase classname="tests.a" name="test_bad"><failure message="x"/></testcase>'
                      '<testcase classname="tests.b" name="test_setup"><error message="y"/></testcase>'
                      '<testcase classname="tests.b" name="test_skip"><skipped/></testcase>'
                      '</testsuite></testsuites>')
    assert _flaky().failed_tests(report) == (4, ["tests.a::test_bad", "tests.b::test_setup"])


@pytest.mark.slow
def test_one_run_beside_a_busy_loop_counts_per_test(tmp_path, capsys):
    rc = _flaky().main(["--runs", "1", "--busy", "1", "--out", str(tmp_path), "--",
                        "-k", "test_the_radius_is_exclusive or test_failed_tests_reads"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "run 1/1 beside 1 busy loop(s): 2 tests, 0 failed" in out and "no test failed in any run" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"][0]["tests"] == 2 and summary["failures"] == {}
