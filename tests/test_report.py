"""report.html: content, robustness (a failing figure or report never fails a run),
Unicode and spaces in names, TTA, Grad-CAM, and the page in a real browser."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import colour_image
from rich.console import Console

import headstart
from headstart import Classifier
from headstart.config import ModelConfig, TrainConfig
from headstart.errors import ConfigError
from headstart.models import build_network
from headstart.predict.eager import Predictor
from headstart.report import analysis, figures
from headstart.report.gradcam import GradCam, GradCamUnsupported
from headstart.tta import iter_views, tta_views, view_count

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # gitignored
# Two classes share a colour, so the model must make mistakes (gallery, Grad-CAM, pairs).
NAMES = {"crème brûlée": (220, 30, 30), "Ñandú <b> & co": (225, 35, 25), "blue sky": (30, 40, 220)}
FAST = TrainConfig(frozen_epochs=3, finetune_epochs=1, batch_size=8, patience=0, lr=1e-2, num_workers=0)


def unicode_folder(root: Path, per_class: int = 10) -> Path:
    """Class folders and file names with accents, spaces and HTML, plus one unreadable file."""
    for c, (name, rgb) in enumerate(NAMES.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            colour_image(rgb, seed=100 * c + i).save(folder / f"photo é {i}.png")
    (root / "blue sky" / "broken file ü.png").write_bytes(b"not an image at all")
    return root


def classifier(weights: str, console: Console | None = None, **model) -> Classifier:
    cfg = ModelConfig(arch="convnet_tiny", weights=weights, **model)
    return Classifier(model=cfg, train_config=FAST, image_size=32, console=console or Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def run(tmp_path_factory, convnet_weights):
    """One two-phase run with a report, shared read-only: (classifier, run folder, console text)."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE_DIR", str(root / "cache"))
        out = io.StringIO()
        clf = classifier(convnet_weights, Console(file=out, width=400)).fit(unicode_folder(root / "data"), out=root / "run")
    return clf, root / "run", out.getvalue()


def html_of(folder: Path) -> str:
    return (folder / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_train_writes_a_self_contained_report_and_prints_its_path(run):
    _, folder, printed = run
    assert f"Report: {folder / 'report.html'}" in printed
    html = html_of(folder)
    for anchor in ('id="data"', 'id="training"', 'id="results-val"', 'id="facts"'):
        assert anchor in html
    sources = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert len(sources) >= 8 and all(s.startswith("data:image/") for s in sources)
    assert "<script" not in html and not re.search(r'(src|href)="(https?:|//)', html)
    assert "could not be made" not in html
    # names render as themselves, the HTML in one escaped
    assert "crème brûlée" in html and "photo é" in html and "Ñandú &lt;b&gt; &amp; co" in html
    assert "<b>" not in html
    assert "broken file ü.png" in html  # the skipped file, with its reason
    for text in (
        "Learning curves",
        "fine-tuning",
        "Most-confused pairs",
        "Most confidently wrong",
        "Grad-CAM",
        "reliability diagram",
        "data fingerprint",
        "balanced accuracy",
        "macro precision",
    ):
        assert text in html, text


def test_train_report_carries_the_layer_summary(run):
    clf, folder, _ = run
    html = html_of(folder)
    assert 'id="layers"' in html and "<code>backbone.stages.2</code>" in html and "(64, 4, 4)" in html
    total = sum(p.numel() for p in clf.artifact.network.parameters())
    assert f'<th class="n">{total:,}</th><th class="n">{total:,}</th>' in html  # two phases: the last trained everything


@pytest.mark.slow
def test_report_renders_in_chromium(run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    _, folder, _ = run
    messages: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("data:") else None)
            page.goto((folder / "report.html").as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            text = page.inner_text("body")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert messages == []
    assert requests == [(folder / "report.html").as_uri()]  # nothing but the page itself
    assert len(images) >= 8 and [alt for alt, ok in images if not ok] == []
    assert "crème brûlée" in text and "Ñandú <b> & co" in text
    assert shot.stat().st_size > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report-train.png")


@pytest.mark.slow
def test_a_failing_figure_becomes_a_note_and_the_run_succeeds(tmp_path, tiny, make_images, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("forced failure for the test")

    monkeypatch.setattr(figures, "confusion_matrix", broken)
    data = make_images(tmp_path / "data", per_class=6)
    clf = tiny(report=True).fit(data, out=tmp_path / "run")
    assert clf.metrics["val"].count == 3 and (tmp_path / "run" / "headstart.json").is_file()
    html = html_of(tmp_path / "run")
    assert html.count("could not be made: RuntimeError: forced failure for the test") == 2  # counts and normalised
    assert "parts of this report could not be made" in html
    assert "Learning curves" in html and "reliability diagram" in html  # the rest is still there


@pytest.mark.slow
def test_a_failing_report_only_warns(tmp_path, tiny, make_images, monkeypatch):
    from headstart.report import build

    def broken(inputs):
        raise ValueError("template exploded")

    monkeypatch.setattr(build, "render", broken)
    out = io.StringIO()
    clf = tiny(report=True)
    clf.console = Console(file=out, width=300)
    clf.fit(make_images(tmp_path / "data", per_class=6), out=tmp_path / "run")
    assert (tmp_path / "run" / "headstart.json").is_file() and "val" in clf.metrics
    assert "the report could not be written (ValueError: template exploded)" in out.getvalue()
    assert not (tmp_path / "run" / "report.html").exists()
    assert "template exploded" in (tmp_path / "run" / "report-error.txt").read_text()


@pytest.mark.slow
def test_evaluate_with_tta_reports_both_and_averages_flips(run, tmp_path):
    clf, folder, _ = run
    loaded = headstart.load(folder)
    loaded.console = Console(file=io.StringIO())
    results = loaded.evaluate(None, out=tmp_path / "eval", tta=True)
    html = html_of(tmp_path / "eval")
    assert "Test-time augmentation" in html and "without TTA" in html and "horizontal flip" in html
    assert results["val"].count == clf.metrics["val"].count

    # TTA = the mean of the centre crop's and its mirror image's probabilities, nothing else
    squares = np.stack(
        [loaded.artifact.preprocess.square(p) for p in sorted(Path(folder.parent / "data" / "blue sky").glob("*é*.png"))[:3]]
    )
    plain = Predictor(loaded.artifact)
    flip = Predictor(loaded.artifact, tta=("hflip",))
    x = loaded.artifact.preprocess.normalize(squares)
    expected = (plain.probabilities(x) + plain.probabilities(np.ascontiguousarray(x[..., ::-1]))) / 2
    np.testing.assert_allclose(flip.probabilities_of_square_batch(squares), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_predict_with_tta(run, tmp_path):
    clf, folder, _ = run
    images = sorted((folder.parent / "data" / "crème brûlée").glob("*.png"))[:4]
    preds = clf.predict([str(p) for p in images], tta="hflip,vflip,crops")
    assert len(preds) == 4 and all(abs(sum(p.probs.values()) - 1) < 1e-5 for p in preds)
    n = clf.predict_to_csv([str(p) for p in images], tmp_path / "p.csv", tta=True)
    assert n == 4
    with pytest.raises(ConfigError, match="Unknown TTA view 'rotate'"):
        clf.predict([str(images[0])], tta="rotate")


def test_tta_views():
    from headstart.preprocess import Preprocess

    assert tta_views(False) == () and tta_views(True) == ("hflip",) and tta_views("crops, hflip,crops") == ("crops", "hflip")
    assert view_count(("hflip", "crops")) == 6
    pre = Preprocess(input_size=8, resize_size=10, mean=(0, 0, 0), std=(1, 1, 1))
    squares = np.random.default_rng(0).integers(0, 255, (2, 10, 10, 3), dtype=np.uint8)
    views = list(iter_views(squares, pre, ("hflip", "vflip", "crops")))
    assert len(views) == 7 and all(v.shape == (2, 3, 8, 8) for v in views)
    np.testing.assert_array_equal(views[1], views[0][..., ::-1])
    np.testing.assert_array_equal(views[3], pre.normalize(squares[:, :8, :8]))  # top-left corner crop


@pytest.mark.slow
@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_sigmoid_tasks_show_curves_and_the_threshold(tmp_path, tiny, make_images, task):
    if task == "binary":
        data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=8)
    else:
        data = make_images(
            tmp_path / "data",
            layout="multilabel",
            per_class=6,
            classes={"red": "warm;bright", "yellow": "warm", "blue": "cold", "white": "bright;cold"},
        )
    clf = tiny(report=True, threshold=0.4).fit(data, out=tmp_path / "run")
    assert clf.artifact.task == task
    html = html_of(tmp_path / "run")
    assert "could not be made" not in html
    assert "Decision threshold" in html and "0.4 (used)" in html and '"threshold"' in html
    assert "precision-recall and ROC" in html
    if task == "multilabel":
        assert "Per-label decisions" in html and "Micro-averaged over all labels" in html
    else:
        assert "Positive class “red”" in html  # classes sorted: blue, red


def test_grad_cam_equals_a_full_backward_pass():
    torch.manual_seed(0)
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = GradCam(net, x, "multiclass").maps([2, 0])

    # the textbook version: gradients through the whole network, from the input up
    xr = x.clone().requires_grad_(True)
    feats = net.backbone.forward_features(xr)
    feats.retain_grad()
    logits = net.head(net.backbone.forward_head(feats))
    (logits[0, 2] + logits[1, 0]).backward()
    cam = torch.relu((feats.grad.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)[:, 0].detach()
    expected = (cam / cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]).numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    assert maps.shape == (2, 32, 32) and maps.max() <= 1.0 and maps.min() >= 0.0


@pytest.mark.slow
def test_grad_cam_on_efficientnet_lite0_and_binary():
    torch.manual_seed(0)
    net = build_network(ModelConfig(arch="tf_efficientnet_lite0", pretrained=False), 1)
    maps = GradCam(net, torch.randn(1, 3, 64, 64), "binary").maps([0])
    assert maps.shape == (1, 64, 64) and np.isfinite(maps).all()


def test_grad_cam_needs_a_spatial_feature_map():
    class Flat(torch.nn.Module):
        def forward_features(self, x):
            return x.mean((2, 3))

        def forward_head(self, x):
            return x

    net = torch.nn.Module()
    net.backbone, net.head = Flat(), torch.nn.Linear(3, 2)
    with pytest.raises(GradCamUnsupported, match="convolutional backbone"):
        GradCam(net, torch.randn(1, 3, 8, 8), "multiclass")


def test_confusion_matrix_scales_to_many_classes():
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = {}
    for k in (5, 60):
        matrix = rng.integers(0, 5, (k, k)) + np.eye(k, dtype=int) * 20
        png = figures.confusion_matrix(matrix, [f"class number {i}" for i in range(k)], normalised=True)
        sizes[k] = Image.open(io.BytesIO(png)).size
    assert sizes[60][0] > 2 * sizes[5][0]  # cells stay legible: the figure grows with k


def test_analysis_numbers():
    truth = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], bool)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    cal = analysis.calibration(probs, truth, "multiclass", bins=10)
    # bins: 0.9 right, 0.8 right, 0.7 wrong, 0.6 wrong -> |1-.9| + |1-.8| + |0-.7| + |0-.6| over 4
    assert cal.ece == pytest.approx((0.1 + 0.2 + 0.7 + 0.6) / 4)
    c = analysis.curve("b", probs[:, 1], truth[:, 1], 0.5)
    assert c.roc_auc == pytest.approx(0.75) and c.at_threshold == (0.5, 0.5, 0.5)
    pairs = analysis.confused_pairs(np.array([[5, 1, 0], [3, 2, 0], [0, 0, 4]]), ["a", "b", "c"])
    assert [(p.true, p.predicted, p.count) for p in pairs] == [("b", "a", 3), ("a", "b", 1)]
    assert pairs[0].share == pytest.approx(0.6)
    wrong = analysis.confident_mistakes(probs, truth, ["x", "y"], "multiclass", 0.5, 5)
    assert [(m.index, m.predicted) for m in wrong] == [(2, ["x"]), (3, ["y"])]
    table = analysis.threshold_table(probs, truth, "binary", 0.35)
    assert [r["threshold"] for r in table if r["used"]] == [0.35] and len(table) == 10
