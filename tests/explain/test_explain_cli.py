"""`sim2real explain` end to end on a shipped policy with a tiny budget (and two arm-emulator episodes
beside the simulated ones): the report folder holds the figures, a JSON of every number and an HTML
page with the figures embedded; bad input exits 2 with what is wrong. With Chromium installed, the page is rendered headless to a screenshot."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from sim2real.cli import main

FIGURES = {"attribution_heatmap.png", "attribution_groups.png", "attribution_ablation.png",
           "attribution_episode.png", "probes_r2.png", "probes_accuracy.png", "probes_over_time.png",
           "memory_projection_reach_lstm.png", "memory_projection_reach_mlp.png", "ablations.png", "weights.png",
           "reality_gap.png"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "reach_lstm"
    rc = main(["explain", "reach_lstm", "--episodes", "12", "--compare", "reach_mlp", "--windows", "6",
               "--ablation-episodes", "4", "--unit-episodes", "0", "--emulator-episodes", "2", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    return out


def test_explain_writes_figures_json_markdown_and_html(report):
    names = {p.name for p in report.iterdir()}
    assert FIGURES <= names and {"explain.json", "report.md", "report.html"} <= names
    summary = json.loads((report / "explain.json").read_text())
    assert list(summary["policies"]) == ["reach_lstm", "reach_mlp"]
    lstm = summary["policies"]["reach_lstm"]
    assert lstm["memory"] == "lstm_hc" and summary["policies"]["reach_mlp"]["memory"] == "mlp_last_hidden"
    assert summary["policies"]["reach_mlp"]["policy"]["weights_from"] == "checkpoint"
    probes = lstm["probes"]
    assert probes["times_s"] == [0.5, 1.0, 2.0, 4.0] and "action_latency" in probes["parameters"]
    assert len(probes["ridge_r2"]["action_latency"]) == 4 and len(probes["logistic_accuracy_shuffled"]["gravity/z"]) == 4
    shares = lstm["attribution"]["group_shares"]
    assert set(shares) == {"saliency", "smoothgrad", "vargrad", "integrated_gradients", "ablation"}
    assert sum(shares["integrated_gradients"].values()) == pytest.approx(1.0, abs=1e-5)
    assert summary["sanity"]["model_randomisation"]["passed"]
    assert summary["ablations"]["intact"]["episodes"] == 4 and summary["ablations"]["variants"]
    gap = summary["reality_gap"]
    assert gap["source"] == "arm emulator" and gap["episodes"] == 2 and gap["hidden_known"]
    # the emulator ran this policy's ONNX graph: the actor replayed on the rebuilt observations
    # reproduces its recorded actions (observation rebuild + reconstruction are consistent)
    assert gap["action_reproduction_median_abs"] < 1e-4
    assert gap["estimates"]["hidden"]["action_latency"] == pytest.approx(1.3)
    assert len(gap["estimates"]["estimate_mean"]["action_latency"]) == 4
    page = (report / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(summary["figures"]) and "relies mostly on" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium (Debian package `chromium`) not installed")
def test_the_html_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1400,2000", (report / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-2000:]


def test_bad_input_exits_2_saying_what_is_wrong(tmp_path, capsys):
    (tmp_path / "manifest_less").mkdir()
    assert main(["explain", str(tmp_path / "manifest_less"), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["explain", "reach_mlp", "--task", "no_such_task", "--episodes", "10", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    assert "no_such_task" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no policy 'nope'"):
        main(["explain", "nope"])
