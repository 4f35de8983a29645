"""Streamed, resumable batch prediction: every input exactly once, however it was interrupted."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

from headstart.artifact import Artifact
from headstart.config import ModelConfig
from headstart.data.index import walk_images
from headstart.errors import DataError
from headstart.models import build_network
from headstart.models.network import data_config
from headstart.predict.csvfile import predict_to_file
from headstart.predict.eager import Predictor
from headstart.predict.inputs import iter_sources
from headstart.preprocess import Preprocess
from headstart.runfolder import ArtifactMeta


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    model = ModelConfig(arch="convnet_tiny", pretrained=False)
    network = build_network(model, 3)
    preprocess = Preprocess.from_timm_config(data_config(network.backbone), 32)
    meta = ArtifactMeta(model, ("blue", "green", "red"), "multiclass", preprocess)
    return Predictor(Artifact(network.eval(), meta), batch_size=4)


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


class Interrupt(Exception):
    pass


class Dying(Predictor):
    """Stops after ``after`` predictions, like a job killed mid-way."""

    def __init__(self, base: Predictor, after: int) -> None:
        self.__dict__.update(base.__dict__)
        self.after = after

    def iter_predict(self, sources, top_k=5):
        for n, p in enumerate(super().iter_predict(sources, top_k)):
            if n == self.after:
                raise Interrupt
            yield p


def test_streamed_sources_follow_the_folder_walk_and_csv(tmp_path, make_images):
    data = make_images(tmp_path / "d", per_class=5)
    assert list(iter_sources([data])) == walk_images(data)[0]
    listing = make_images(tmp_path / "c", layout="csv", per_class=2)
    assert [Path(p).name for p in iter_sources([listing])] == [f"{c}_{i}.png" for c in ("red", "green", "blue") for i in range(2)]
    (tmp_path / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(DataError, match="no 'path' column"):
        list(iter_sources([tmp_path / "bad.csv"]))


@pytest.mark.parametrize("after, torn", [(5, False), (9, True), (0, False)])
def test_an_interrupted_job_resumes_without_loss_or_repeat(tmp_path, make_images, predictor, after, torn):
    data = make_images(tmp_path / "d", per_class=5)
    (data / "red" / "zz_broken.png").write_bytes(b"not a png")
    whole = tmp_path / "whole.csv"
    assert predict_to_file(predictor, [data], whole, top_k=2, chunk=3) == (16, 0)
    out = tmp_path / "out.csv"
    with pytest.raises(Interrupt):
        predict_to_file(Dying(predictor, after), [data], out, top_k=2, chunk=3)
    kept = rows(out)
    assert len(kept) == 1 + (after // 3) * 3  # header + whole chunks only
    if torn:  # a kill in the middle of a write leaves half a line
        with out.open("a") as handle:
            handle.write("/half/a/row.png,re")
    new, old = predict_to_file(predictor, [data], out, top_k=2, resume=True, chunk=3)
    assert (new, old) == (16 - len(kept) + 1, len(kept) - 1)
    assert rows(out) == rows(whole)
    assert predict_to_file(predictor, [data], out, top_k=2, resume=True) == (0, 16)  # finished: nothing to do


def test_resume_refuses_other_inputs(tmp_path, make_images, predictor):
    data = make_images(tmp_path / "d", per_class=3)
    out = tmp_path / "out.csv"
    predict_to_file(predictor, [data / "red"], out, top_k=2)
    with pytest.raises(DataError, match="same inputs"):
        predict_to_file(predictor, [data / "blue"], out, top_k=2, resume=True)
    with pytest.raises(DataError, match="top-k 3"):
        predict_to_file(predictor, [data / "red"], out, top_k=3, resume=True)


class Meddled(Predictor):
    """Mid-way through its job, another writer tries the same file (found by bench/faults.py crowd:
    two predict --out into one file interleaved their rows)."""

    def __init__(self, base: Predictor, other) -> None:
        self.__dict__.update(base.__dict__)
        self.other, self.refusals = other, []

    def iter_predict(self, sources, top_k=5):
        for n, p in enumerate(super().iter_predict(sources, top_k)):
            if n == 4:
                with pytest.raises(DataError, match="being written by another process") as refused:
                    self.other()
                self.refusals.append(refused.value)
            yield p


def test_a_second_writer_of_the_same_file_is_refused(tmp_path, make_images, predictor):
    data = make_images(tmp_path / "d", per_class=3)
    out, whole = tmp_path / "p.csv", tmp_path / "whole.csv"
    predict_to_file(predictor, [data], whole, top_k=2)
    first = Meddled(predictor, lambda: predict_to_file(predictor, [data / "red"], out, top_k=2))
    assert predict_to_file(first, [data], out, top_k=2, chunk=3) == (9, 0)
    assert first.refusals and rows(out) == rows(whole)  # refused before it touched a byte
    resumed = Meddled(predictor, lambda: predict_to_file(predictor, [data], out, top_k=2, resume=True))
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:3]))  # 2 rows, as if killed
    assert predict_to_file(resumed, [data], out, top_k=2, resume=True) == (7, 2)
    assert resumed.refusals and rows(out) == rows(whole)


def test_shards_split_the_inputs(tmp_path, make_images, predictor):
    data = make_images(tmp_path / "d", per_class=4)
    parts = []
    for k in range(3):
        predict_to_file(predictor, [data], tmp_path / f"p{k}.csv", top_k=1, shard=(k, 3))
        parts.append([r[0] for r in rows(tmp_path / f"p{k}.csv")[1:]])
    assert sorted(itertools.chain(*parts)) == sorted(walk_images(data)[0])
    assert [len(p) for p in parts] == [4, 4, 4]


def test_cli_predict_resumes_and_shards(tmp_path, make_images, predictor):
    from typer.testing import CliRunner

    from headstart.artifact import save_artifact
    from headstart.cli import app

    run = tmp_path / "run"
    run.mkdir()
    save_artifact(run, predictor.artifact)
    data = make_images(tmp_path / "d", per_class=3)
    out = tmp_path / "p.csv"
    runner = CliRunner()
    first = runner.invoke(app, ["predict", str(run), str(data), "--out", str(out), "--top-k", "2"])
    assert first.exit_code == 0, first.output
    whole = out.read_text()
    out.write_text("".join(whole.splitlines(keepends=True)[:4]) + "/torn")  # 3 rows, then half a line
    again = runner.invoke(app, ["predict", str(run), str(data), "--out", str(out), "--resume", "--top-k", "2"])
    assert again.exit_code == 0, again.output
    assert out.read_text() == whole
    bad = runner.invoke(app, ["predict", str(run), str(data), "--out", str(out), "--shard", "2/2"])
    assert bad.exit_code != 0 and "K/N" in str(bad.exception or bad.output)
