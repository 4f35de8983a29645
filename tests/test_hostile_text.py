"""Issue 20, names and text: Rich markup and terminal escapes in names, formula cells in the
CSVs people open in spreadsheets, and a class name the split file must hold."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rich.console import Console

from headstart.data.index import DataIndex, Sample, Skipped
from headstart.data.prepare import Prepared
from headstart.data.split import read_split, write_split
from headstart.label_issues.table import LabelIssue, Neighbour, excluded_paths, read_csv, to_csv
from headstart.pipeline.outputs import print_data
from headstart.predict.base import Prediction
from headstart.predict.csvfile import _written, header, row
from headstart.text import cell, from_cell, printable, shown

HOSTILE = ["[/x]", "[link=https://evil.example]click[/link]", "bell\x07\x1b[2Jclear", '=HYPERLINK("https://evil.example")']


def rendered(*lines: str) -> str:
    console = Console(file=io.StringIO(), width=300, force_terminal=False, color_system=None)
    for line in lines:
        console.print(line)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_names_print_as_they_are_through_rich():
    out = rendered(*(f"class {shown(n)}" for n in HOSTILE))
    assert "class [/x]" in out and "[link=https://evil.example]click[/link]" in out
    assert "\x1b" not in out and "\x07" not in out and "bell\\x07\\x1b[2Jclear" in out


def test_the_per_class_table_of_train_survives_markup_in_class_names(tmp_path):
    """Found by the review: a class folder '[/x]' ended train with a MarkupError traceback,
    after config.json was written."""
    samples = {"train": [Sample("a", (0,)), Sample("b", (1,))], "val": [Sample("c", (2,))]}
    skipped = [Skipped("/data/\x1b]8;;https://evil.example\x07x.png", "not a regular file")]
    prepared = Prepared(None, {}, samples, skipped)  # type: ignore[arg-type]
    console = Console(file=io.StringIO(), width=300, color_system=None)
    print_data(console, prepared, HOSTILE[:3], tmp_path)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/x]" in out and "\x1b" not in out and "\\x1b]8;;" in out


def test_printable_makes_bidi_overrides_visible():
    assert printable("cat\u202egpj.exe") == "cat\\u202egpj.exe"


@pytest.mark.parametrize("value", ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "'=x", "'", "plain", "", "a=b"])
def test_formula_cells_are_neutralised_and_read_back(value):
    written = cell(value)
    assert written[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert from_cell(written) == value


def test_the_predictions_csv_neutralises_paths_and_class_names(tmp_path):
    """Found by the review: class names and paths starting with '=' went raw into the CSV."""
    pred = Prediction(source="/data/=cmd|' /C calc'!A0.png", top=[("=evil", 0.9), ("cat", 0.1)], labels=["=evil"])
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header(2))
        writer.writerow(row(pred, 2))
    cells = next(iter(list(csv.reader(path.open()))[1:]))
    assert cells[0] == pred.source  # the path does not start with '=': left alone
    assert cells[1] == "'=evil" and cells[2] == "'=evil" and cells[4] == "cat"
    pred2 = Prediction(source="=HYPERLINK(1).png", top=[("cat", 1.0)], labels=["cat"])
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(row(pred2, 2))
    assert _written(path, 2) == (2, "=HYPERLINK(1).png")  # --resume compares the very path


def test_the_label_issues_csv_neutralises_and_reads_back(tmp_path):
    issue = LabelIssue("/d/=x.png", "=given", "+suggested", "mislabelled", 0.1, 0.9, (Neighbour("/d/@n.png", "-lab", 0.5),), True)
    text = to_csv([issue], "/d")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][:3] == ["'=x.png", "'=given", "'+suggested"] and "'@n.png" in rows[1] and "'-lab" in rows[1]
    path = tmp_path / "label_issues.csv"
    path.write_text(text)
    back = read_csv(path, "/d")[0]
    assert (back.path, back.given, back.suggested, back.neighbours[0].labels) == ("/d/=x.png", "=given", "+suggested", "-lab")
    assert excluded_paths(path, "/d")[0] == {"/d/=x.png"}


def test_the_split_file_holds_a_class_name_with_a_semicolon(tmp_path):
    """Found by the review: a class folder 'cat;dog' trained, then evaluate, export and resume failed."""
    classes = ["[x", "cat", "cat;dog", "dog"]
    samples = {"train": [Sample(f"/d/{i}.png", (i,)) for i in range(4)], "val": [Sample("/d/v.png", (2,))]}
    write_split(tmp_path / "split.csv", DataIndex(Path("."), "folders", classes, False, samples))
    back = read_split(tmp_path / "split.csv", classes)
    assert back == samples


def test_split_files_written_before_still_read(tmp_path):
    (tmp_path / "split.csv").write_text("split,path,labels\ntrain,/d/a.png,cat\nval,/d/b.png,cat;dog\ntrain,/d/c.png,[/x]\n")
    back = read_split(tmp_path / "split.csv", ["[/x]", "cat", "dog"])
    assert [s.labels for s in back["train"]] == [(1,), (0,)] and back["val"][0].labels == (1, 2)
