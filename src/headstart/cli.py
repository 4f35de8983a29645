"""The command line: each command parses its options, calls the API, prints.

    headstart train DATA [--out RUN]        headstart evaluate RUN [--data TEST]
    headstart predict RUN IMAGES... [--out preds.csv]     headstart demo
    headstart export RUN --format onnx|torchscript|timm   headstart serve RUN
    headstart push RUN USER/REPO                          headstart summary RUN

Only predict (with an exported ONNX model) and serve run without the training stack.
"""

from __future__ import annotations

import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from headstart.cli_options import build_config, config_fields, with_config_options
from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.demo import data_folder as demo_data_folder
from headstart.errors import ConfigError, HeadstartError, MissingExtraError, disk_full, unwritable
from headstart.paths import default_outside, refuse_inside_data
from headstart.text import shown as safe  # user text: control characters made visible, markup escaped
from headstart.tta import VIEWS as TTA_VIEWS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Folder of labelled images -> trained, evaluated classifier.")
cache_app = typer.Typer(help="The decoded-image cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
out = Console(soft_wrap=True)  # results: one line per image, never wrapped
err = Console(stderr=True, soft_wrap=True)


_TRAINING_STACK = ("torch", "torchvision", "timm", "lightning", "torchmetrics", "safetensors", "matplotlib", "jinja2", "onnx")


def _training_api():
    """headstart.api, or one clear line when the training stack is not installed."""
    try:
        from headstart import api
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _TRAINING_STACK:
            raise MissingExtraError(
                f"This command needs the training stack ({exc.name} is not installed): pip install 'headstart[train]'."
            ) from None
        raise
    return api


BACKEND_HELP = "auto (CUDA: torch; else RUN/export/model.onnx when exported; else torch), torch, onnx, or onnx-int8 (model.int8.onnx)."
RESUME_ALLOWED = ("devices", "num_nodes", "strategy", "accelerator", "dist_timeout", "report")
TRAIN_FIELDS = [
    *config_fields(ModelConfig),
    *config_fields(TrainConfig),
    *config_fields(AugmentConfig),
]


def _given(ctx: typer.Context) -> list[str]:
    """The parameters the user typed (or set through the environment), not defaults."""
    typed = ("COMMANDLINE", "ENVIRONMENT")  # by name: typer may bring its own click
    return [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", None) in typed]


def _spelling(ctx: typer.Context, name: str) -> str:
    param = next(p for p in ctx.command.params if p.name == name)
    return (param.name or "").upper() if param.param_type_name == "argument" else param.opts[0]


@app.command()
@with_config_options(TRAIN_FIELDS)
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(
        None,
        help="Folder (class sub-folders, or train/val/test), CSV (path,label | path,labels), parquet or WebDataset .tar shards, or hf://datasets/NAME.",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder. Default: runs/<data name>, never overwriting."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this interrupted run folder from its last checkpoint."),
    image_size: Optional[int] = typer.Option(
        None, help="Input side in pixels. Default: planned from the images (--recipe auto), else the architecture's."
    ),
    augment: bool = typer.Option(True, help="Training augmentation (flip, rotation, crop, colour)."),
    cache: bool = typer.Option(True, help="Keep decoded images in the on-disk cache."),
    report: bool = typer.Option(True, help="Write RUN/report.html (data, curves, results, Grad-CAM)."),
    exclude: Optional[Path] = typer.Option(
        None, help="Train without the files of this CSV (label_issues.csv: its rows with exclude = true; another CSV: every 'path')."
    ),
    **options: Any,
) -> None:
    """Train a classifier on DATA: frozen base first, then fine-tuning."""
    given = _given(ctx)
    if resume is not None:  # the run's own data and options; only where it runs may change
        _resume(ctx, resume, given, report)
        return
    if data is None:
        raise typer.BadParameter("give DATA (a folder or CSV), or --resume RUN")
    if not augment and {"rotation", "vflip"} & set(given):
        raise ConfigError("--rotation and --vflip set the augmentation that --no-augment turns off; drop one or the other.")
    api = _training_api()
    if out_dir is not None:
        refuse_inside_data(out_dir, data, default=api.default_run_dir(data))
    else:  # only checked: ranks > 0 of a multi-process run find rank 0's folder themselves
        default_outside(api.default_run_dir(data), data)
    model = build_config(ModelConfig, options)
    aug = build_config(AugmentConfig, options) if augment else AugmentConfig.none()
    cfg = build_config(TrainConfig, options, augment=aug)
    api.Classifier(model=model, train_config=cfg, image_size=image_size, cache=cache, console=err, report=report).fit(
        data, out_dir, exclude=exclude
    )


@app.command("plan")
@with_config_options(TRAIN_FIELDS)
def plan_command(
    data: Path = typer.Argument(..., help="Folder or CSV, as for 'train'."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels (pins the recipe, as for 'train')."),
    cache: bool = typer.Option(True, help="Keep decoded images and features in the cache (a later 'train' reuses them)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan, with its candidates' table, as JSON."),
    **options: Any,
) -> None:
    """Show the recipe 'train' would use on DATA, with the measured candidates, without training."""
    model = build_config(ModelConfig, options)
    cfg = build_config(TrainConfig, options, augment=build_config(AugmentConfig, options))
    quiet = Console(stderr=True, quiet=True)
    chosen = _training_api().Classifier(model=model, train=cfg, image_size=image_size, cache=cache, console=quiet).plan(data)
    if chosen.plan is None:
        out.print(chosen.note or "Recipe: the options as given (--recipe fixed).", highlight=False)
    elif as_json:
        out.print_json(data=chosen.plan.to_dict())
    else:
        out.print(chosen.plan.describe(), highlight=False)


def _resume(ctx: typer.Context, run: Path, given: list[str], report: bool) -> None:
    """--resume RUN: refuse DATA and training options (the run keeps its own); apply and
    print the placement options and --report."""
    refused = [_spelling(ctx, n) for n in given if n not in (*RESUME_ALLOWED, "resume")]
    if refused:
        allowed = ", ".join(_spelling(ctx, n) for n in RESUME_ALLOWED)
        raise ConfigError(
            f"--resume {run} continues with the run's own data and options, so {', '.join(refused)} cannot be given; "
            f"allowed with --resume: {allowed}."
        )
    placement = {n: ctx.params[n] for n in given if n in RESUME_ALLOWED and n != "report"}  # TrainConfig fields, as typed
    if placement or "report" in given:
        shown = [f"{_spelling(ctx, n)} {v}" for n, v in placement.items()] + (
            ["--report" if report else "--no-report"] if "report" in given else []
        )
        err.print(f"Resuming {safe(run)} with " + ", ".join(shown), highlight=False)
    _training_api().Classifier.resume(run, console=err, report=report, placement=placement)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train'."),
    data: Optional[Path] = typer.Option(None, help="Folder or CSV to evaluate on. Default: the run's own validation/test split."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write metrics. Default: RUN/eval-<data name>."),
    cache: bool = typer.Option(True, help="Use the decoded-image cache."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average over the image and its mirror image."),
    tta_views: Optional[str] = typer.Option(None, help=f"TTA views, comma-separated from {', '.join(TTA_VIEWS)} (implies --tta)."),
    report: bool = typer.Option(True, help="Write report.html beside the metrics."),
) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on DATA."""
    if out_dir is not None:
        for folder in [data, _trained_on(run)]:
            if folder is not None:
                refuse_inside_data(out_dir, folder, default=run / f"eval-{Path(folder).stem}")
    Classifier = _training_api().Classifier

    clf = Classifier.load(run, backend="torch")  # evaluation scores the eager network
    clf.cache = cache
    clf.console = err
    clf.report = report
    clf.evaluate(data, out_dir, tta=tta_views or tta)


def _trained_on(run: Path) -> Optional[Path]:
    """The data folder a run was trained on, as its config.json records it (None: unknown)."""
    from headstart.runfolder import trained_on

    return trained_on(run)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train', an exported model.onnx, or hf-hub:USER/REPO."),
    inputs: list[Path] = typer.Argument(..., help="Image files, folders, and/or CSVs with a 'path' column."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to show per image."),
    out_csv: Optional[Path] = typer.Option(None, "--out", "-o", help="Write all predictions to this CSV, streamed as they come."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted --out file: skip the inputs it already holds."),
    shard: str = typer.Option("0/1", help="K/N: predict every N-th input from the K-th (one process per device: CUDA_VISIBLE_DEVICES=K)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average over the image and its mirror image."),
    tta_views: Optional[str] = typer.Option(None, help=f"TTA views, comma-separated from {', '.join(TTA_VIEWS)} (implies --tta)."),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    threads: Optional[int] = typer.Option(None, min=1, help="Model threads. Default: all cores."),
    batch_size: int = typer.Option(32, min=1, help="Images per model call (decoding of the next batch overlaps it)."),
) -> None:
    """Class names and probabilities for images (a run folder, or an exported model.onnx).
    INPUTS: files, folders, or a CSV with a 'path' column."""
    from headstart.errors import ConfigError
    from headstart.predict.csvfile import predict_to_file
    from headstart.predict.inputs import iter_sources, shard_of
    from headstart.tta import tta_views as resolve_views

    parts = shard.split("/")
    k, n = (int(v) if v.isdigit() else -1 for v in parts) if len(parts) == 2 else (-1, 0)
    if not 0 <= k < n:
        raise ConfigError(f"--shard {shard!r}: give K/N with 0 <= K < N, e.g. 0/4 ... 3/4.")
    if resume and out_csv is None:
        raise ConfigError("--resume continues an --out file: give --out PREDICTIONS.csv (the file to continue).")
    if out_csv is not None:
        from headstart.paths import refuse_inside_data

        for source in inputs:
            if source.is_dir():
                refuse_inside_data(out_csv, source, default=Path(f"predictions-{source.resolve().name}.csv"))
    views = resolve_views(tta_views or tta)  # a bad view name fails before the model loads
    predictor = _predictor(run, views, backend, threads, batch_size)

    if out_csv is not None:
        new, old = predict_to_file(predictor, [str(p) for p in inputs], out_csv, top_k, resume=resume, shard=(k, n))
        err.print(f"{new + old} predictions in {safe(out_csv)}", highlight=False)
        return
    sources = shard_of(iter_sources([str(p) for p in inputs]), (k, n))
    for pred in predictor.iter_predict(sources, top_k=top_k):
        if pred.error:
            typer.echo(f"{pred.source}\tunreadable: {pred.error}")
        else:
            typer.echo(f"{pred.source}\t" + "  ".join(f"{name} {p:.3f}" for name, p in pred.top))


def _predictor(run: Path, tta: tuple[str, ...] = (), backend: str = "auto", threads: int | None = None, batch_size: int = 32):
    """The model the resolver picks (headstart.predict.resolve), named on stderr; a timm-layout
    folder or ``hf-hub:USER/REPO`` (headstart.share) predicts with its eager network."""
    from headstart.predict.resolve import load_predictor, resolve

    # Spelled out, not headstart.models.hub.is_hub: importing headstart.models needs torch.
    if str(run).startswith("hf-hub:") or ((run / "headstart_meta.json").is_file() and not (run / "headstart.json").is_file()):
        return _training_api().Classifier.load(run).predictor(tta)
    choice = resolve(run, backend)
    predictor = load_predictor(choice, threads=threads, batch_size=batch_size, tta=tta)
    if choice.run_dir is not None:  # a run folder: say which of its models answers (after it loaded: errors stay one line)
        err.print(safe(choice.summary()), highlight=False)
    return predictor


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    timm = "timm"


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train'."),
    format: ExportFormat = typer.Option(
        ExportFormat.onnx, "--format", "-f", help="onnx (dynamic batch), torchscript, or timm (a folder timm.create_model loads)."
    ),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output file. Default: RUN/export/model.onnx (.pt; timm: RUN/export/timm/)."
    ),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx: static int8, calibrated on the run's training images."),
    min_agreement: float = typer.Option(
        0.98, help="--int8: refuse unless the 95% lower bound of its top-1 agreement with fp32 reaches this."
    ),
) -> None:
    """Export the model with its classes and preprocessing inside, then check parity (and time it)."""
    result = _training_api().Classifier.load(run, backend="torch").export(format.value, out_path, int8=int8, min_agreement=min_agreement)
    err.print(f"{result.parity.summary()}: ok")
    if result.speed is not None:
        err.print(f"{result.path.name} ({format.value}, fp32) on this machine: {result.speed.summary()}")
    if result.int8 is not None:
        err.print(f"{result.int8.agreement.summary()}: ok")
        if result.int8.speed is not None:
            err.print(f"{result.int8.path.name} (onnx, int8) on this machine: {result.int8.speed.summary()}")
        typer.echo(str(result.int8.path))
    typer.echo(str(result.path))


@app.command()
def push(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train'."),
    repo: str = typer.Argument(..., help="USER/REPO on the Hugging Face Hub (created when new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
) -> None:
    """Upload the model to the Hugging Face Hub: timm layout, model card, metadata (never data or checkpoints)."""
    result = _training_api().Classifier.load(run, backend="torch").push(repo, private=private)
    err.print(f"Uploaded {', '.join(result.files)} to {result.repo}")
    typer.echo(result.url)


@app.command()
def summary(run: Path = typer.Argument(..., help="A run folder, a timm export folder, or hf-hub:USER/REPO.")) -> None:
    """Each layer group's output shape, parameters and trainable parameters (like Keras' model.summary())."""
    from headstart.summary import run_summary, summary_table

    artifact = _training_api().Classifier.load(run, backend="torch").artifact
    size = artifact.preprocess.input_size
    out.print(summary_table(run_summary(artifact), title=f"{artifact.model.arch} at {size}x{size} px (trainable: in the last phase)"))


@app.command()
def serve(
    run: Path = typer.Argument(..., help="A run folder, or an exported model.onnx."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind. 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    max_batch: int = typer.Option(8, help="Most images in one model call (CPU: 8; GPU: 32 or more)."),
    max_wait_ms: float = typer.Option(2.0, help="How long a request may wait for others to share its batch."),
    queue_size: int = typer.Option(256, help="Images waiting beyond this are answered 503."),
    threads: Optional[int] = typer.Option(None, help="Model threads. Default: all cores."),
    token: Optional[str] = typer.Option(
        None, help="Token every client must send (default: HEADSTART_SERVE_TOKEN; off loopback one is generated and printed)."
    ),
    no_token: bool = typer.Option(False, "--no-token", help="Off loopback, serve without a token: anyone who can reach it may use it."),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="A Host name clients may use besides loopback and --host (repeat; '*': any)."
    ),
) -> None:
    """A prediction server with a web page at / (FastAPI + uvicorn)."""
    try:
        from headstart.serve import ServeConfig, run_server
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"Serving needs {exc.name}: pip install 'headstart[serve]'.") from None
    if token is not None and no_token:
        raise ConfigError("--token and --no-token contradict each other; give one.")
    cfg = ServeConfig(
        max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, threads=threads, token=token, allow_hosts=tuple(allow_host)
    )
    run_server(run, host=host, port=port, backend=backend, config=cfg, console=err, no_token=no_token)


@app.command()
def demo(
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder. Default: runs/demo, never overwriting."),
    open_report: bool = typer.Option(False, "--open", help="Open the run's report.html in the default browser when done."),
) -> None:
    """Train on the bundled OpenClipart sample (1,594 drawings, 6 classes) with the bundled EfficientNet-Lite0, offline."""
    api = _training_api()
    Classifier, default_run_dir = api.Classifier, api.default_run_dir
    from headstart import demo as bundled

    data = demo_data_folder()
    if out_dir is not None:
        refuse_inside_data(out_dir, data, default=default_run_dir("demo"))
    out_dir = out_dir or default_outside(default_run_dir("demo"), data)
    err.print(f"Demo: {safe(data)} (public-domain OpenClipart drawings, see LICENSE.md there)")
    clf = Classifier(console=err).fit(data, out_dir)  # every default
    from headstart.data.split import read_split

    val = read_split(clf.run_dir / "split.csv", clf.classes)["val"]
    err.print("One validation image per class (not trained on):")
    for pred in clf.predict(bundled.one_per_class([(s.path, s.labels[0]) for s in val], clf.classes), top_k=2):
        truth = Path(pred.source).parent.name
        err.print(f"  true {safe(truth):<15} predicted " + ", ".join(f"{safe(n)} {p:.2f}" for n, p in pred.top), highlight=False)
    metrics = clf.metrics["val"]
    report = clf.run_dir / "report.html"
    opened = (report.is_file() and _open_in_browser(report)) if open_report else None
    for line in bundled.summary(metrics.accuracy, metrics.count, report if report.is_file() else None, opened):
        err.print(safe(line), highlight=False)


def _open_in_browser(page: Path) -> bool:
    """Whether a browser took the page (False on a machine without one: the path is printed instead).

    On Linux without a display, webbrowser would start a console browser (lynx, w3m) in
    the terminal and wait for it: there the path is printed instead."""
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return webbrowser.open(page.resolve().as_uri())
    except webbrowser.Error:
        return False


LR_FIND_FIELDS = [
    (ModelConfig, "arch"),
    (ModelConfig, "weights"),
    (ModelConfig, "head"),
    (ModelConfig, "hidden"),
    (TrainConfig, "optimizer"),
    (TrainConfig, "batch_size"),
    (TrainConfig, "val_fraction"),
    (TrainConfig, "seed"),
    (TrainConfig, "class_weights"),
]


@app.command("lr-find")
@with_config_options(LR_FIND_FIELDS, help={"val_fraction": "Validation share when DATA has no val split (kept out of the sweep)."})
def lr_find(
    data: Path = typer.Argument(..., help="Folder or CSV, as for 'train'."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where lr_find.png/.json go. Default: ./lr-find-<data name>."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels. Default: the architecture's."),
    cache: bool = typer.Option(True, help="Use the decoded-image cache."),
    **options: Any,
) -> None:
    """Learning-rate range test of the head on the frozen base: a plot and a suggested --lr."""
    default = Path("lr-find-" + (re.sub(r"[^\w.-]+", "_", data.resolve().stem) or "data"))
    if out_dir is not None:
        refuse_inside_data(out_dir, data, default=default)
    else:
        out_dir = default_outside(default, data)
    Classifier = _training_api().Classifier
    model, cfg = build_config(ModelConfig, options), build_config(TrainConfig, options)
    finding = Classifier(model=model, train_config=cfg, image_size=image_size, cache=cache, console=err).lr_find(data, out_dir)
    out.print(f"{finding.suggestion:.3g}")
    err.print(f"Next: headstart train {safe(data)} --lr {finding.suggestion:.2g}   (or --lr auto)")


@app.command()
def doctor(
    data: Path = typer.Argument(..., help="Folder or CSV, in any layout 'train' accepts. Only read, never changed."),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Where doctor.json and doctor.html go. Default: ./doctor-<data name>."
    ),
    near: int = typer.Option(5, help="Near-duplicate threshold: differing bits of a 256-bit perceptual hash (-1: off)."),
    min_side: int = typer.Option(32, help="Report images with a side below this many pixels."),
    workers: Optional[int] = typer.Option(None, help="Reader threads. Default: 2 per core, at most 16."),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="Also find images whose label is probably wrong (out-of-fold heads on frozen-base features; label_issues.csv).",
    ),
    arch: str = typer.Option("tf_efficientnet_lite0", help="--labels: the frozen base, any timm architecture."),
    weights: Optional[Path] = typer.Option(None, help="--labels: backbone weights file (.safetensors/.pth/.bin)."),
    image_size: Optional[int] = typer.Option(None, help="--labels: input side in pixels. Default: the architecture's."),
    folds: int = typer.Option(5, help="--labels: heads trained, each predicting the images it did not see."),
) -> None:
    """Check a data set: unreadable files, wrong extensions, sizes, duplicates, leakage, label conflicts, imbalance
    and, with --labels, probably wrong labels."""
    from headstart.doctor import diagnose, print_summary, write_outputs
    from headstart.doctor.run import check_out, default_out

    target = out_dir or default_out(data)
    refuse_inside_data(target, data, default=default_out(data))
    check_out(target, data)  # before reading 100k files, not after
    search = None
    if labels:
        _training_api()  # the training stack, or one clear line saying how to install it
        from headstart.label_issues import LabelSearch

        search = LabelSearch(arch=arch, weights=str(weights) if weights else None, image_size=image_size, folds=folds)
    diagnosis = diagnose(data, near_threshold=near, min_side=min_side, workers=workers, show=err.is_terminal, labels=search)
    folder = write_outputs(diagnosis, target)
    print_summary(diagnosis, out)
    if diagnosis.label_issues is not None:
        from headstart.label_issues import CSV_NAME, print_top

        print_top(diagnosis.label_issues, out)
        out.print(
            f"Label issues to review: [bold]{safe(folder / CSV_NAME)}[/] (then: headstart train DATA --exclude {safe(folder / CSV_NAME)})"
        )
    out.print(f"Details in [bold]{safe(folder / 'doctor.html')}[/] and {safe(folder / 'doctor.json')}")


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete headstart's caches (decoded images and frozen-base features): only the entries
    headstart wrote; a folder that is not a headstart cache is refused, nothing deleted."""
    from headstart.cache import cache_root, clear_cache

    done = clear_cache()
    for part, size in done.removed_bytes.items():
        err.print(f"Removed {safe(cache_root() / part)} ({size / 1e6:.1f} MB)", highlight=False)
    if done.left:
        err.print(f"Left {len(done.left)} files headstart did not write, e.g. {safe(done.left[0])}", highlight=False)


@cache_app.command("info")
def cache_info() -> None:
    """Where the caches are and how big."""
    from headstart.cache import PARTS, cache_root

    for part, what in PARTS.items():
        folder = cache_root() / part
        files = [f for f in folder.glob("*.npy")] if folder.exists() else []
        size = sum(f.stat().st_size for f in files)
        out.print(f"{safe(folder)}: {len(files)} {what} entries, {size / 1e6:.1f} MB", highlight=False)
    out.print("HEADSTART_CACHE_DIR overrides the location; 'headstart cache clear' empties it.")


def _rank_prefix() -> str:
    """' rank N:' in a process of a multi-process run, so an error names its process."""

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" rank {os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0'))} of {world}:" if world > 1 else ""


# What lowers memory, by command: named in the one line when a run runs out of it.
MEMORY_HINTS = {
    "train": "lower --batch-size (activations grow with it) or --image-size, or give fewer --workers, and train again into a new --out",
    "lr-find": "lower --batch-size or --image-size",
    "demo": "train on the demo data with a lower --batch-size: headstart train " + str(demo_data_folder()) + " --batch-size 16",
}


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


# The commands that load torch (or a model), for which a too-small ulimit -v is refused up front.
HEAVY = ("train", "lr-find", "demo", "evaluate", "predict", "export", "serve", "doctor", "push", "summary")


def main() -> None:
    """Entry point: usage errors and HeadstartErrors become one line and an exit code."""
    from headstart.memory_guard import is_out_of_memory, out_of_memory
    from headstart.process import guarded

    command = _command(sys.argv[1:])
    hint = MEMORY_HINTS.get(command or "", "free memory or raise the limit")
    try:
        # The process guards (headstart.process): the thread policy before torch starts,
        # SIGTERM unwinding like Ctrl+C, and the memory guard; a server answers 503 under
        # load instead, it must not stop itself.
        with guarded(hint, memory=command != "serve", address_space=command in HEAVY and "--help" not in sys.argv):
            app(standalone_mode=False)
    except (HeadstartError, OSError) as exc:
        known = exc if isinstance(exc, HeadstartError) else (disk_full(exc) or unwritable(exc))  # other OSErrors keep their traceback
        if known is None:
            raise
        err.print(f"[red]error:[/]{_rank_prefix()} {safe(known)}", highlight=False, soft_wrap=True)  # '[train]' is not markup
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors (bad option, missing argument...)
        message = getattr(exc, "format_message", None)
        if message is None:
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err.print(f"[red]error:[/] {safe(message())}{safe(where)}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        from headstart.machine import memory_limit

        err.print(f"[red]error:[/]{_rank_prefix()} {safe(out_of_memory(None, memory_limit(), hint))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
