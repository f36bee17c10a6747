"""salt evaluate / salt compare: files written, numbers equal to metrics.json, plots readable,
errors in one line, and the commands of the docs run on tiny predictions files."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from salt.evaluation.cli import compare_main, evaluate_main
from salt.evaluation.evaluate import evaluate_predictions
from salt.evaluation.metrics import b_discriminant, compute_metrics
from salt.evaluation.pt_bins import performance_vs_pt

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["bjets", "cjets", "ujets"]
SHORT = ["b", "c", "u"]


def write_predictions(path: Path, taggers: dict[str, float], n: int = 400, seed: int = 0) -> None:
    """A predictions file as ``salt test`` writes it, with one field set per tagger; a larger
    strength separates the flavours better. Labels are the same for every seed-sharing file."""
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(0).integers(0, 3, n)
    dtype = [(f"{t}_p{s}", "f4") for t in taggers for s in SHORT]
    dtype += [("flavour_label", "i4"), ("HadronConeExclTruthLabelID", "i4"), ("pt", "f4")]
    jets = np.zeros(n, dtype=dtype)
    for tagger, strength in taggers.items():
        logits = rng.normal(size=(n, 3)) + strength * np.eye(3)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        for i, s in enumerate(SHORT):
            jets[f"{tagger}_p{s}"] = probs[:, i]
    jets["flavour_label"] = labels
    jets["HadronConeExclTruthLabelID"] = np.array([5, 4, 0])[labels]
    jets["pt"] = np.random.default_rng(1).uniform(20.0, 400.0, n)  # GeV, like the demo data
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset("jets", data=jets)
        ds.attrs["flavour_label"] = np.array(CLASSES, dtype="S")


def make_run(root: Path, name: str, taggers: dict[str, float], seed: int) -> tuple[Path, Path]:
    """A run directory with its config and the predictions file of ``salt test``."""
    run = root / f"{name}_20260101-T000000"
    pred = run / "ckpts" / "epoch=001-val_loss=0.50000__test_test.h5"
    write_predictions(pred, taggers, seed=seed)
    (run / "config.yaml").write_text(f"name: {name}\n")
    return run, pred


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    gn2, gn2_pred = make_run(tmp_path / "logs", "GN2_demo", {"GN2_demo": 1.5, "GN2v01": 2.0}, 1)
    part, part_pred = make_run(tmp_path / "logs", "ParT_small", {"ParT_small": 1.0}, 2)
    return {"gn2": gn2, "gn2_pred": gn2_pred, "part": part, "part_pred": part_pred}


def assert_png(path: Path) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200, path


def test_compare_equals_each_runs_metrics(
    runs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = {}
    for key, tagger in (("gn2", "GN2_demo"), ("part", "ParT_small")):
        out = runs[key] / "evaluation" / runs[f"{key}_pred"].stem
        own[tagger] = evaluate_predictions(runs[f"{key}_pred"], out, tagger, CLASSES)
        assert json.loads((out / "metrics.json").read_text()) == own[tagger]
    out = tmp_path / "cmp"
    args = [str(runs["gn2"]), str(runs["part"]), "--reference", "ParT_small", "--out", str(out)]
    assert compare_main(args) == 0

    written = sorted(p.name for p in out.iterdir())
    pngs = ["rejection.png", "discriminant_b.png", "discriminant_c.png", "discriminant_u.png"]
    pngs += ["pt_b_efficiency.png", "pt_c_rejection.png", "pt_u_rejection.png"]
    assert written == sorted(["comparison.md", "comparison.json", *pngs])
    for name in pngs:
        assert_png(out / name)

    summary = json.loads((out / "comparison.json").read_text())
    assert summary["reference"] == "ParT_small" and list(summary["taggers"]) == list(own)
    for tagger, metrics in own.items():
        entry = summary["taggers"][tagger]
        for key in ("n_jets", "n_per_flavour", "fc", "working_points", "auc"):
            assert entry[key] == metrics[key], (tagger, key)
        run_key = "gn2" if tagger == "GN2_demo" else "part"
        assert entry["sample"] == "test" and entry["run_dir"] == str(runs[run_key])
    ratio = summary["taggers"]["GN2_demo"]["ratio_to_reference"]["0.70"]["u"]
    u_gn2 = own["GN2_demo"]["working_points"]["0.70"]["u_rejection"]
    u_part = own["ParT_small"]["working_points"]["0.70"]["u_rejection"]
    assert ratio == pytest.approx(u_gn2 / u_part)
    assert summary["taggers"]["ParT_small"]["ratio_to_reference"]["0.70"] == {"c": 1.0, "u": 1.0}
    assert summary["taggers"]["GN2_demo"]["pt"]["working_point"] == 0.7

    table = (out / "comparison.md").read_text()
    wp = own["GN2_demo"]["working_points"]["0.77"]
    cell = f"{wp['u_rejection']:.1f} ± {wp['u_rejection_uncertainty']:.1f}"
    row = next(
        line for line in table.splitlines() if line.startswith("| GN2_demo | " + f"{wp['cut']:.3f}")
    )
    assert cell in row and f"{ratio:.3f}" in table
    assert "comparison.md" in caplog.text  # the paths are listed at the end


def test_compare_errors_are_one_line(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "cmp")
    assert compare_main([str(runs["gn2"]), "--out", out]) == 0
    before = (tmp_path / "cmp" / "comparison.json").read_text()

    def error(args: list[str]) -> str:
        capsys.readouterr()
        assert compare_main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("salt compare: error: "), lines
        return lines[-1]

    assert "--overwrite" in error([str(runs["gn2"]), "--out", out])
    assert (tmp_path / "cmp" / "comparison.json").read_text() == before
    msg = error([str(runs["gn2"]), str(runs["part"]), "--reference", "DL1r", "--out", out + "2"])
    assert "'DL1r'" in msg and "ParT_small" in msg
    empty = tmp_path / "logs" / "empty_run"
    empty.mkdir()
    assert "run 'salt test'" in error([str(empty)])
    # a file with two taggers and no run name to choose: say how to pick one
    loose = tmp_path / "loose.h5"
    runs["gn2_pred"].rename(loose)
    assert "GN2v01" in error([str(loose), "--out", out + "3"])
    assert "no such run directory" in error([str(tmp_path / "nope.h5")])

    # FILE:TAGGER picks one tagger of a file, e.g. a reference carried from the test file
    both = [f"{loose}:GN2_demo", f"{loose}:GN2v01", "--out", out + "4"]
    assert compare_main(both) == 0
    taggers = json.loads((tmp_path / "cmp4" / "comparison.json").read_text())["taggers"]
    assert list(taggers) == ["GN2_demo", "GN2v01"]


def test_evaluate_recomputes_with_new_fc_and_reference(
    runs: dict[str, Path], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    pred = runs["gn2_pred"]
    assert evaluate_main([str(pred), "--fc", "0.1", "--reference", "GN2v01"]) == 0
    out = runs["gn2"] / "evaluation" / f"{pred.stem}__fc0.1"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tagger"] == "GN2_demo"  # the run's model, not the carried reference
    assert metrics["fc"] == 0.1 and metrics["reference"] == "GN2v01"

    with h5py.File(pred) as h5:
        jets = h5["jets"][()]
    truth = np.array(SHORT)[jets["flavour_label"]]
    for tagger, metrics_of in (("GN2_demo", metrics), ("GN2v01", metrics["baselines"]["GN2v01"])):
        probs = {s: jets[f"{tagger}_p{s}"] for s in SHORT}
        by_hand = compute_metrics(truth, probs, fc=0.1)
        assert metrics_of["working_points"] == by_hand["working_points"]
        assert metrics_of["auc"] == by_hand["auc"]
    for name in ("GN2_demo_rejection.png", "GN2_demo_pt_u_rejection.png"):
        assert_png(out / name)
    assert "u rej" in caplog.text and "metrics.json" in caplog.text

    assert evaluate_main([str(pred), "--fc", "0.1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert evaluate_main([str(pred), "--tagger", "DL1r", "--out", str(out) + "x"]) == 2
    assert "'DL1r'" in capsys.readouterr().err


def test_performance_vs_pt_by_hand() -> None:
    # b-jets: discriminants 0..9; the 60 % cut tags 6 of 10 (those > 3.6)
    disc = np.array([*range(10), 5.0, 0.0, 5.0, 0.0], dtype=float)
    truth = np.array(["b"] * 10 + ["u"] * 4)
    pt = np.array([25.0] * 5 + [50.0] * 5 + [25.0, 25.0, 50.0, 500.0])
    result = performance_vs_pt(disc, truth, pt, 0.6, bins=[20.0, 40.0, 80.0])
    assert result["cut"] == pytest.approx(3.6)
    b = result["flavours"]["b"]
    assert b["n_jets"] == [5, 5]
    assert b["efficiency"] == [pytest.approx(0.2), 1.0]  # only 4 of bin 1 is above 3.6
    assert b["efficiency_uncertainty"][0] == pytest.approx(math.sqrt(0.2 * 0.8 / 5))
    u = result["flavours"]["u"]
    assert u["n_jets"] == [2, 1]  # the 500 GeV jet is outside the bins
    assert u["efficiency"] == [0.5, 1.0]
    assert u["rejection"] == [2.0, 1.0]
    assert u["rejection_uncertainty"][0] == pytest.approx(math.sqrt(0.25 / 2) / 0.25)
    with pytest.raises(ValueError, match="increasing"):
        performance_vs_pt(disc, truth, pt, 0.6, bins=[40.0, 20.0])
    disc_b = b_discriminant({"b": np.array([0.5]), "u": np.array([0.5])}, fc=0.0)
    assert disc_b[0] == pytest.approx(0.0)


def doc_commands() -> list[tuple[str, str]]:
    """(file, line) of every ``salt evaluate`` / ``salt compare`` line in the docs' bash blocks."""
    found = []
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                if re.match(r"\s*salt (evaluate|compare)\b", line):
                    found.append((doc.name, line.strip()))
    return found


@pytest.mark.slow
def test_doc_commands_run(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = doc_commands()
    assert {name for name, _ in commands} >= {"evaluation.md", "model-comparison.md"}
    values = {
        "$pred": [str(runs["gn2_pred"])],
        "$gn2": [str(runs["gn2"])],
        "$part": [str(runs["part"])],
        "$runs": [str(runs["gn2"]), str(runs["part"])],
    }
    monkeypatch.chdir(tmp_path)
    for where, line in commands:
        argv = []
        for word in shlex.split(line, comments=True)[2:]:
            argv += values.get(word, [word])
        assert not [a for a in argv if a.startswith("$")], f"{where}: unknown variable in {line}"
        main = evaluate_main if line.split()[1] == "evaluate" else compare_main
        assert main(argv) == 0, f"{where}: {line}"
    assert (tmp_path / "comparison" / "comparison.md").is_file()
    assert (tmp_path / "fc005" / "metrics.json").is_file()
