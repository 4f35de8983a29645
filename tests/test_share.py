"""Sharing: timm's loader reads a timm export, the card, push/fetch up to the network call."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

import headstart
import headstart.models  # noqa: F401  (convnet_* in timm's registry)
from headstart import cli
from headstart.artifact import Artifact, load_artifact, save_artifact
from headstart.config import ModelConfig
from headstart.errors import ArtifactError, ConfigError, ExportError
from headstart.export import parity
from headstart.models import build_network
from headstart.models.network import probabilities
from headstart.preprocess import Preprocess
from headstart.runfolder import ArtifactMeta, DataSource, read_meta, read_metrics
from headstart.share import card, hub, timm_layout
from headstart.share.folder import load_folder

CLASSES = {"multiclass": ["cat", "dog", "owl"], "binary": ["no", "yes"], "multilabel": ["red", "round", "shiny"]}


def make_run(root: Path, arch: str = "convnet_tiny", task: str = "multiclass", head: str = "linear", size: int = 32) -> Path:
    """A run folder holding an untrained (seeded) model: export needs no training."""
    torch.manual_seed(0)
    classes = CLASSES[task]
    model = ModelConfig(arch=arch, pretrained=False, head=head)
    network = build_network(model, 1 if task == "binary" else len(classes), load_weights=False).eval()
    with torch.no_grad():  # make logits large enough that a wrong mapping shows
        for p in network.head.parameters():
            p.mul_(10)
    preprocess = Preprocess(size, size + 4, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "bicubic")
    meta = ArtifactMeta(
        model=model,
        classes=tuple(classes),
        task=task,
        preprocess=preprocess,
        data=DataSource(data=str(root / "private" / "pets"), layout="folders", counts={"train": 80, "val": 20}),
        extra={"model_weights": str(root / "w.pt")},  # a field a later release may add: shared, scrubbed
    )
    save_artifact(root, Artifact(network, meta))
    metrics = {"val": {"task": task, "classes": classes, "count": 20, "accuracy": 0.9, "balanced_accuracy": 0.85, "macro_f1": 0.8}}
    (root / "metrics.json").write_text(json.dumps(metrics))
    return root


def inputs(size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize(
    "arch, task, size",
    [
        ("convnet_tiny", "multiclass", 32),
        ("convnet_res", "binary", 32),
        ("convnet_tiny", "multilabel", 32),
        ("test_efficientnet", "multiclass", 32),  # timm's tiny test models: the same code path as the big ones
        ("test_convnext", "binary", 32),  # a head norm before the classifier
        pytest.param("test_vit", "multilabel", 160, marks=pytest.mark.slow),  # fixed input size, class token
    ],
)
def test_timm_loads_the_export_and_gives_headstarts_probabilities(tmp_path, arch, task, size):
    run = make_run(tmp_path / "run", arch, task, size=size)
    folder = headstart.load(run).export("timm").path
    assert sorted(p.name for p in folder.iterdir()) == sorted(timm_layout.FILES)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.from_numpy(inputs(size))
    with torch.no_grad():
        logits = model(x)
        got = logits.sigmoid() if task == "multilabel" else logits.softmax(-1)
        want = probabilities(headstart.load(run).artifact.network(x), task)
    assert torch.allclose(got, want, atol=1e-6)
    assert got.shape == (5, len(CLASSES[task]))  # binary: two logits [0, z]


def test_config_is_timms_schema_with_the_trained_preprocessing(tmp_path):
    run = make_run(tmp_path / "run", "test_resnet")
    folder = headstart.load(run).export("timm").path
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "test_resnet" and cfg["num_classes"] == 3 and cfg["label_names"] == ["cat", "dog", "owl"]
    pcfg = cfg["pretrained_cfg"]
    assert pcfg["input_size"] == [3, 32, 32] and pcfg["mean"] == [0.4, 0.5, 0.6] and pcfg["std"] == [0.2, 0.25, 0.3]
    assert pcfg["interpolation"] == "bicubic" and pcfg["crop_mode"] == "center"
    assert not {"url", "hf_hub_id", "file", "test_input_size"} & set(pcfg)  # nothing points timm at other weights
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    data = timm.data.resolve_model_data_config(model)
    assert tuple(data["input_size"]) == (3, 32, 32) and int(32 / data["crop_pct"]) == 36  # resize to 36, crop 32, as trained
    keys = list(load_file(str(folder / "model.safetensors")))
    assert "fc.weight" in keys and not any(k.startswith(("backbone.", "head.")) for k in keys)


@pytest.mark.parametrize("size, resize", [(224, 256), (32, 36), (97, 113), (299, 342), (64, 64)])
def test_crop_pct_makes_timm_resize_to_the_trained_side(size, resize):
    import math

    assert math.floor(size / timm_layout.crop_pct(size, resize)) == resize


def test_heads_timm_cannot_express_are_refused_in_one_line(tmp_path):
    run = make_run(tmp_path / "run", head="mlp")
    with pytest.raises(ExportError, match="mlp head.*--format onnx") as info:
        headstart.load(run).export("timm")
    assert "\n" not in str(info.value)
    assert not (run / "export" / "timm").exists()


def test_failed_parity_keeps_nothing(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    real = parity.check
    monkeypatch.setattr(parity, "check", lambda ref, exp, x, h: real(ref, lambda b: exp(b)[:, ::-1].copy(), x, h))
    with pytest.raises(ExportError, match="parity"):
        headstart.load(run).export("timm")
    assert not (run / "export" / "timm").exists() and not list((run / "export").iterdir())


def test_an_export_over_other_files_is_refused(tmp_path):
    run = make_run(tmp_path / "run")
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="other files"):
        headstart.load(run).export("timm", target)
    assert (target / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_headstart_loads_the_folder_back_with_the_same_predictions(tmp_path, task):
    run = make_run(tmp_path / "run", "convnet_tiny", task)
    folder = headstart.load(run).export("timm").path
    back = headstart.load(folder)
    assert back.classes == CLASSES[task] and back.artifact.task == task
    x = torch.from_numpy(inputs())
    with torch.no_grad():
        assert torch.allclose(back.artifact.network(x), headstart.load(run).artifact.network(x), atol=1e-5)


def test_nothing_shared_holds_an_absolute_path(tmp_path):
    run = make_run(tmp_path / "run")
    folder = headstart.load(run).export("timm").path
    for f in folder.iterdir():
        if f.suffix != ".safetensors":
            assert str(tmp_path) not in f.read_text(), f.name
    meta = json.loads((folder / timm_layout.META).read_text())
    assert meta["data"]["data"] == "pets" and meta["model_weights"] == "w.pt"


def test_card_is_hub_metadata_plus_intervals_and_loading_instructions(tmp_path):
    from huggingface_hub import ModelCard

    run = make_run(tmp_path / "run")
    text = (headstart.load(run).export("timm").path / "README.md").read_text()
    data = ModelCard(text).data.to_dict()
    assert data["library_name"] == "timm" and "image-classification" in data["tags"] and data["datasets"] == ["pets"]
    assert data["model-index"][0]["results"][0]["metrics"][0] == {"type": "accuracy", "value": 0.9, "name": "val accuracy"}
    assert "0.9000 (0.6990 - 0.9721)" in text and "Wilson" in text  # 18 of 20
    assert 'timm.create_model("hf-hub:' in text and "headstart predict hf-hub:" in text and "--format onnx" in text
    assert "Intended use and limits" in text and "resize the shorter side to 36 px" in text


def test_card_escapes_hostile_class_names(tmp_path):
    model = ModelConfig(arch="convnet_tiny", pretrained=False)
    hostile = ("<script>alert(1)</script>", "a|b\n---")
    meta = ArtifactMeta(model=model, classes=hostile, task="multiclass", preprocess=Preprocess(32, 36, (0.5,) * 3, (0.5,) * 3))
    text = card.model_card(card.CardFacts("x", meta))
    assert "<script>" not in text and "a\\|b \\-\\-\\-" in text
    assert text.count("\n---\n") == 1  # only the end of the YAML block


def test_a_card_from_a_0_1_0_run_reads_its_typed_description():
    fixture = Path(__file__).parent / "fixtures" / "run-0.1.0"
    facts = card.CardFacts.from_run(fixture, timm_layout.shared_meta(load_artifact(fixture)))
    assert facts.metrics["val"].per_class[0].name == "blue" and facts.meta.data is not None
    text = card.model_card(facts, "ann/blocks")
    assert "| blue | 2 |" in text and "36 images from `data` (folders): train 30, val 6." in text
    assert "1 frozen-base epochs then 1 fine-tuning epochs, optimizer adamw, batch 32." in text
    assert "| val | 6 | 1.0000 (0.6097 - 1.0000) | 1.0000 | 1.0000 |" in text and "mean \\[0.5, 0.5, 0.5\\]" in text
    assert "/tmp/headstart-run-0.1.0" not in text  # 0.1.0 wrote the data folder as an absolute path


def test_a_card_without_metrics_says_so_and_damaged_metrics_are_one_line(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "metrics.json").unlink()
    facts = card.CardFacts.from_run(run, read_meta(run))
    assert facts.metrics == {} and "No held-out metrics were recorded" in card.model_card(facts)
    (run / "metrics.json").write_text(json.dumps({"val": {"task": "multiclass", "classes": ["cat"], "count": "20"}}))
    with pytest.raises(ArtifactError, match=r"metrics.json: split 'val'.*count \(an integer\).*remove it") as info:
        card.CardFacts.from_run(run, read_meta(run))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_metrics_json_reads_back_as_the_metrics_written(tmp_path, task):
    from rich.console import Console

    from headstart.metrics import compute_metrics
    from headstart.pipeline.outputs import write_metrics

    probs = np.array([[0.7, 0.2, 0.6], [0.1, 0.8, 0.3], [0.3, 0.3, 0.9]])
    labels = [(0, 2), (1,), (2,)] if task == "multilabel" else [(0,), (1,), (0,)]
    if task == "binary":
        probs = probs[:, :2] / probs[:, :2].sum(1, keepdims=True)
    classes = CLASSES[task]
    written = {"val": compute_metrics(probs, labels, classes[: probs.shape[1]], task)}
    write_metrics(tmp_path, written, Console(file=io.StringIO()))
    assert read_metrics(tmp_path) == written


# -- the Hub, up to the network call --------------------------------------------------------


class FakeApi:
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", {**kw, "present": sorted(p.name for p in Path(kw["folder_path"]).iterdir())}))


def test_push_uploads_only_the_allowlist(tmp_path, monkeypatch):
    import huggingface_hub

    run = make_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "split.csv").write_text("path,label,split\n")
    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = headstart.load(run).push("ann/pets", private=True)
    (_, create), (_, upload) = FakeApi.calls
    assert create == {"repo_id": "ann/pets", "private": True, "exist_ok": True, "repo_type": "model"}
    assert upload["repo_id"] == "ann/pets" and Path(upload["folder_path"]) == run / "export" / "timm"
    assert sorted(upload["allow_patterns"]) == sorted(timm_layout.FILES) == upload["present"]
    assert result.url == "https://huggingface.co/ann/pets"
    assert 'hf-hub:ann/pets"' in (run / "export" / "timm" / "README.md").read_text()


def test_fetch_asks_for_the_allowlist_and_loads_it(tmp_path, monkeypatch):
    import huggingface_hub

    folder = headstart.load(make_run(tmp_path / "run")).export("timm").path
    asked = {}

    def snapshot(repo, **kw):
        asked.update(repo=repo, **kw)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    clf = headstart.load("hf-hub:ann/pets@v2")
    assert asked["repo"] == "ann/pets" and asked["revision"] == "v2" and sorted(asked["allow_patterns"]) == sorted(timm_layout.FILES)
    assert clf.classes == CLASSES["multiclass"] and clf.run_dir == folder


def test_offline_fetch_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo, **kw):
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder\nsecond line")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    monkeypatch.setattr(sys, "argv", ["headstart", "predict", "hf-hub:ann/pets", str(image)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "hf-hub:ann/pets needs the network" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["ann", "ann/pets/x", "../etc/passwd", "ann/..", "an n/pets", "hf-hub:"])
def test_bad_repo_names_are_refused(name):
    with pytest.raises(ConfigError, match="not a Hub repository"):
        hub.repo_id(name)


def test_a_folder_of_another_kind_is_refused(tmp_path):
    folder = headstart.load(make_run(tmp_path / "run")).export("timm").path
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pretrained_cfg"]["url"] = "https://example.com/other.pth"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="other weights"):
        load_folder(folder)


# -- convnets in timm's registry -------------------------------------------------------------


@pytest.mark.parametrize("name", ["convnet_tiny", "convnet_small", "convnet_res", "convnet_res_wide"])
def test_convnets_are_timm_models(name):
    model = timm.create_model(name, num_classes=4)
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 4)
    model.reset_classifier(0)
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, model.num_features)


def test_a_shared_model_is_a_base_for_a_new_run(tmp_path, monkeypatch):
    """--arch hf-hub:USER/REPO goes through timm's Hub loader; served here from a local folder."""
    import timm.models._hub as timm_hub

    from headstart.models.network import create_backbone

    run = make_run(tmp_path / "run", "convnet_res")
    folder = headstart.load(run).export("timm").path
    monkeypatch.setattr(timm_hub, "hf_hub_download", lambda repo_id, filename, **kw: str(folder / filename))
    base = create_backbone(ModelConfig(arch="hf-hub:ann/pets", pretrained=True))
    x = torch.from_numpy(inputs())
    with torch.no_grad():
        assert torch.allclose(base.eval()(x), headstart.load(run).artifact.network.backbone(x), atol=1e-6)


def test_an_unreachable_hub_base_is_one_line(monkeypatch):
    import timm.models._hub as timm_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from headstart.models.network import create_backbone

    def offline(repo_id, filename, **kw):
        raise LocalEntryNotFoundError("outgoing traffic has been disabled")

    monkeypatch.setattr(timm_hub, "hf_hub_download", offline)
    with pytest.raises(hub.NetworkError, match="--arch hf-hub:ann/pets needs the network"):
        create_backbone(ModelConfig(arch="hf-hub:ann/pets", pretrained=True))


# -- the layer summary -----------------------------------------------------------------------


def test_summary_rows_add_up_with_shapes_at_the_run_size(tmp_path):
    from headstart.summary import run_summary

    artifact = headstart.load(make_run(tmp_path / "run", "convnet_tiny")).artifact
    rows = run_summary(artifact)
    assert [r.name for r in rows] == ["backbone.stages.0", "backbone.stages.1", "backbone.stages.2", "backbone.pool", "head.0"]
    assert [r.shape for r in rows] == ["(16, 16, 16)", "(32, 8, 8)", "(64, 4, 4)", "(64,)", "(3,)"]
    assert sum(r.params for r in rows) == sum(p.numel() for p in artifact.network.parameters())


@pytest.mark.parametrize("pretrained, finetune, unfreeze, trained", [(False, 0, 0, 5), (True, 0, 0, 1), (True, 2, 0, 5), (True, 2, 1, 2)])
def test_summary_trainable_is_what_the_last_phase_trained(tmp_path, pretrained, finetune, unfreeze, trained):
    from headstart.models.layers import layer_summary, trained_last

    net = headstart.load(make_run(tmp_path / "run")).artifact.network
    rows = layer_summary(net, 32, trained_last(net, pretrained, finetune, unfreeze))
    assert sum(1 for r in rows if r.trainable) == trained - (1 if trained == 5 else 0)  # the pool has no parameters
    assert all(r.trainable in (0, r.params) for r in rows)


def test_summary_covers_parameters_outside_child_modules():
    from headstart.models.layers import layer_summary

    net = build_network(ModelConfig(arch="test_vit", pretrained=False), 3, load_weights=False)
    rows = layer_summary(net, 160)
    assert rows[0].name == "backbone (own parameters)"  # cls_token, pos_embed
    assert sum(r.params for r in rows) == sum(p.numel() for p in net.parameters())


def test_summary_command_prints_the_table(tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["summary", str(make_run(tmp_path / "run"))])
    assert result.exit_code == 0, result.output
    printed = result.stdout
    assert "backbone.stages.2" in printed and "(64, 4, 4)" in printed and "total" in printed


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64), "timm cannot load"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors missing"),
        (lambda f: (f / "config.json").write_text('{"architecture": "no_such_net", "pretrained_cfg": {}}'), "timm cannot load"),
        (lambda f: (f / "headstart_meta.json").write_text("[" * 100_000), "not valid JSON"),
        (lambda f: (f / "headstart_meta.json").write_text('{"format": "headstart-model", "classes": "x"}'), "headstart_meta.json"),
    ],
)
def test_a_damaged_folder_is_one_clear_error(tmp_path, damage, message):
    folder = headstart.load(make_run(tmp_path / "run")).export("timm").path
    damage(folder)
    with pytest.raises(ArtifactError, match=message) as info:
        load_folder(folder)
    assert "\n" not in str(info.value)


def test_export_command_writes_the_timm_folder(tmp_path):
    from typer.testing import CliRunner

    run = make_run(tmp_path / "run")
    result = CliRunner().invoke(cli.app, ["export", str(run), "--format", "timm"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run / "export" / "timm") and (run / "export" / "timm" / "config.json").is_file()


def test_a_trained_run_exports_with_its_held_out_images(exported_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(exported_run[0], tmp_path / "run"))
    result = headstart.load(run).export("timm")
    assert result.parity.ok and result.parity.held_out == 6  # the run's validation images went through timm's loader
    text = (result.path / "README.md").read_text()
    assert "| val | 6 |" in text and "checkpoints" not in text


def test_exporting_a_fetched_model_needs_out(tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    folder = Path(shutil.copytree(headstart.load(make_run(tmp_path / "run")).export("timm").path, cache / "models--ann--pets" / "snap"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    clf = headstart.load(folder)
    with pytest.raises(ConfigError, match="Hugging Face cache: give --out"):
        clf.export("onnx")
    assert clf.export("timm", tmp_path / "mine").path == tmp_path / "mine"
