"""`headstart predict` without --out: CSV inputs read, --shard applied, --resume refused, TTA passed."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import headstart
from headstart import cli
from headstart.cli import app
from headstart.data.index import walk_images

runner = CliRunner()


def printed(args: list) -> dict[str, str]:
    """{source: what predict printed for it}, in-process."""
    result = runner.invoke(app, ["predict", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return dict(line.split("\t", 1) for line in result.stdout.splitlines())


def test_a_csv_of_paths_is_read_not_treated_as_an_image(exported_run, tmp_path):
    run, data = exported_run
    files = walk_images(data)[0][:4]
    listing = tmp_path / "list.csv"
    listing.write_text("path,note\n" + "".join(f"{f},x\n" for f in files), encoding="utf-8")
    from_csv = printed([run, listing, "-k", "2"])
    assert list(from_csv) == files
    assert not any("unreadable" in v for v in from_csv.values())
    assert from_csv == printed([run, *files, "-k", "2"])
    # the torch-free ONNX runtime reads the same CSV
    onnx = printed([run / "export" / "model.onnx", listing, "-k", "2"])
    assert list(onnx) == files and not any("unreadable" in v for v in onnx.values())


def test_shard_without_out_is_applied(exported_run):
    run, data = exported_run
    files = walk_images(data)[0]
    assert list(printed([run, data, "--shard", "1/3"])) == files[1::3]


def test_resume_without_out_is_one_line_and_exit_2(exported_run, monkeypatch, capsys):
    run, data = exported_run
    monkeypatch.setattr(sys, "argv", ["headstart", "predict", str(run), str(data), "--resume"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error:") and "--resume" in lines[0] and "--out" in lines[0]


def test_tta_is_given_at_construction(exported_run):
    run, data = exported_run
    files = walk_images(data)[0][:3]
    clf = headstart.load(run)
    plain = clf.predictor()
    flipped = clf.predictor(tta="hflip")
    assert flipped.tta == ("hflip",) and plain.tta == () and clf.predictor() is plain  # nothing mutated
    want = {p.source: "  ".join(f"{c} {v:.3f}" for c, v in p.top) for p in flipped.predict(files, top_k=3)}
    assert printed([run, *files, "--tta-views", "hflip"]) == want


def test_out_inside_an_input_folder_is_refused_before_any_work(tmp_path, make_images):
    from typer.testing import CliRunner

    from headstart.cli import app

    data = make_images(tmp_path / "imgs")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "no-such-run"), str(data), "--out", str(data / "preds.csv")])
    assert result.exit_code != 0
    assert "inside the data folder" in str(result.exception) or "inside the data folder" in result.output
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
