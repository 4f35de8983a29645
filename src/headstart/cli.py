"""The command line: each command parses its options, calls the API, prints.

    headstart train DATA [--out RUN]        headstart evaluate RUN [--data TEST]
    headstart predict RUN IMAGES... [--out preds.csv]     headstart demo
    headstart export RUN --format onnx|torchscript        headstart serve RUN

Only predict (with an exported ONNX model) and serve run without the training stack.
"""

from __future__ import annotations

import shutil
import sys
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from headstart.errors import HeadstartError, MissingExtraError
from headstart.tta import VIEWS as TTA_VIEWS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Folder of labelled images -> trained, evaluated classifier.")
cache_app = typer.Typer(help="The decoded-image cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
out = Console(soft_wrap=True)  # results: one line per image, never wrapped
err = Console(stderr=True, soft_wrap=True)


class Head(str, Enum):
    linear = "linear"
    bottleneck = "bottleneck"
    mlp = "mlp"


class TaskName(str, Enum):
    multiclass = "multiclass"
    binary = "binary"
    multilabel = "multilabel"


def _lr(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"--lr {text!r}: give a number such as 3e-3, or auto") from None


_TRAINING_STACK = ("torch", "torchvision", "timm", "lightning", "torchmetrics", "safetensors", "matplotlib", "jinja2", "onnx")


def _training_api():  # type: ignore[no-untyped-def]
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


def _widths(text: Optional[str]) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--hidden {text!r}: give comma-separated integers such as 512,256") from None


@app.command()
def train(
    data: Optional[Path] = typer.Argument(None, help="Folder (class sub-folders, or train/val[/test]) or CSV (path,label | path,labels)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder. Default: runs/<data name>, never overwriting."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this interrupted run folder from its last checkpoint."),
    arch: str = typer.Option("tf_efficientnet_lite0", help="Any timm architecture, or convnet_tiny / convnet_small."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (.safetensors/.pth/.bin)."),
    pretrained: bool = typer.Option(True, help="Start from pretrained weights (--no-pretrained: random init)."),
    head: Head = typer.Option(Head.linear, help="Head on the pooled features."),
    hidden: Optional[str] = typer.Option(None, help="Hidden widths, e.g. 256 (bottleneck) or 512,256 (mlp)."),
    dropout: float = typer.Option(0.0, help="Dropout in the head."),
    task: Optional[TaskName] = typer.Option(None, help="Default: follows the data."),
    threshold: float = typer.Option(0.5, help="Decision threshold for binary and multi-label."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels. Default: the architecture's."),
    frozen_epochs: Optional[int] = typer.Option(None, help="Phase 1: epochs training the head on the frozen base. Default: 30 on cached features, else 5."),
    finetune_epochs: Optional[int] = typer.Option(None, help="Phase 2: epochs fine-tuning the base (0: skip). Default: 3 on a GPU, 0 on a CPU."),
    lr: str = typer.Option("3e-3", help="Head learning rate, or 'auto': run lr-find first and use its suggestion."),
    finetune_lr: Optional[float] = typer.Option(None, help="Phase 2 head learning rate. Default: lr / 10."),
    base_lr_ratio: float = typer.Option(0.3, help="Phase 2: base learning rate = finetune-lr * this."),
    unfreeze: int = typer.Option(0, help="Phase 2: unfreeze the last N stages (0: all)."),
    optimizer: str = typer.Option("adamw", help="adamw, adam or sgd."),
    weight_decay: float = typer.Option(0.01),
    schedule: str = typer.Option("cosine", help="cosine, constant, or plateau (reduce LR on plateau)."),
    batch_size: int = typer.Option(32),
    val_fraction: float = typer.Option(0.2, help="Validation share when DATA has no val split."),
    seed: int = typer.Option(0),
    monitor: str = typer.Option("val_loss", help="Best-checkpoint and early-stopping metric: val_loss, val_acc or val_f1."),
    patience: int = typer.Option(3, help="Early stopping patience in epochs (0: off)."),
    class_weights: Optional[str] = typer.Option(None, "--class-weights", help="'balanced': loss weights inverse to class frequency."),
    oversample: bool = typer.Option(False, "--oversample", help="Sample rare classes more often."),
    augment: bool = typer.Option(True, help="Training augmentation (flip, rotation, crop, colour)."),
    rotation: float = typer.Option(10.0, help="Augmentation: max rotation in degrees."),
    vflip: bool = typer.Option(False, help="Augmentation: vertical flips too."),
    feature_cache: bool = typer.Option(True, help="Phase 1 on base features computed once."),
    feature_views: int = typer.Option(1, help="Phase 1 on cached features: 1 + this many minus 1 random training views per image."),
    cache: bool = typer.Option(True, help="Keep decoded images in the on-disk cache."),
    workers: Optional[int] = typer.Option(None, help="Data loader workers. Default: sized to the machine."),
    accelerator: str = typer.Option("auto", help="Lightning accelerator: auto, cpu, gpu, mps."),
    precision: Optional[str] = typer.Option(None, help="Lightning precision, e.g. bf16-mixed."),
    devices: str = typer.Option("1", help="Devices (processes) per machine: a count, 'auto', -1 (all) or ids such as 0,1."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Machines (launch with torchrun or SLURM; see README)."),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy: ddp (default with several devices), fsdp, auto."),
    dist_timeout: float = typer.Option(1800.0, help="Seconds a process waits in a collective for a silent one before the run fails."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the base for fine-tuning (slow first steps)."),
    logger: str = typer.Option("auto", help="Besides epochs.csv: auto (TensorBoard if installed), csv, tensorboard or mlflow."),
    report: bool = typer.Option(True, help="Write RUN/report.html (data, curves, results, Grad-CAM)."),
    exclude: Optional[Path] = typer.Option(None, help="Train without the files of this CSV (label_issues.csv: its rows with exclude = true; another CSV: every 'path')."),
) -> None:
    """Train a classifier on DATA: frozen base first, then fine-tuning."""
    Classifier = _training_api().Classifier
    from headstart.config import AugmentConfig, ModelConfig, TrainConfig

    if resume is not None:  # same options as the run, except where it runs, when given
        given = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "accelerator": accelerator, "dist_timeout": dist_timeout}
        defaults = {"devices": "1", "num_nodes": 1, "strategy": None, "accelerator": "auto", "dist_timeout": 1800.0}
        Classifier.resume(resume, console=err, report=report, placement={k: v for k, v in given.items() if v != defaults[k]})
        return
    if data is None:
        raise typer.BadParameter("give DATA (a folder or CSV), or --resume RUN")
    model = ModelConfig(
        arch=arch, pretrained=pretrained, weights=str(weights) if weights else None, head=head.value,
        hidden=_widths(hidden), dropout=dropout, task=task.value if task else None, threshold=threshold,
    )
    aug = AugmentConfig(rotation=rotation, vflip=vflip) if augment else AugmentConfig.none()
    cfg = TrainConfig(
        frozen_epochs=frozen_epochs, finetune_epochs=finetune_epochs, lr=_lr(lr), finetune_lr=finetune_lr, base_lr_ratio=base_lr_ratio,
        unfreeze=unfreeze, optimizer=optimizer, weight_decay=weight_decay, schedule=schedule, batch_size=batch_size,
        val_fraction=val_fraction, seed=seed, monitor=monitor, patience=patience,
        class_weights=class_weights, oversample=oversample, augment=aug,
        feature_cache=feature_cache, feature_views=feature_views, num_workers=workers, accelerator=accelerator, precision=precision, compile=compile,
        logger=logger, devices=devices, num_nodes=num_nodes, strategy=strategy, dist_timeout=dist_timeout,
    )
    Classifier(model=model, train=cfg, image_size=image_size, cache=cache, console=err, report=report).fit(data, out_dir, exclude=exclude)


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
    Classifier = _training_api().Classifier

    clf = Classifier.load(run)
    clf.cache = cache
    clf.console = err
    clf.report = report
    clf.evaluate(data, out_dir, tta=tta_views or tta)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train'."),
    inputs: List[Path] = typer.Argument(..., help="Image files and/or folders."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to show per image."),
    out_csv: Optional[Path] = typer.Option(None, "--out", "-o", help="Write all predictions to this CSV, streamed as they come."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted --out file: skip the inputs it already holds."),
    shard: str = typer.Option("0/1", help="K/N: predict every N-th input from the K-th (one process per device: CUDA_VISIBLE_DEVICES=K)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average over the image and its mirror image."),
    tta_views: Optional[str] = typer.Option(None, help=f"TTA views, comma-separated from {', '.join(TTA_VIEWS)} (implies --tta)."),
) -> None:
    """Class names and probabilities for images (a run folder, or an exported model.onnx).
    INPUTS: files, folders, or a CSV with a 'path' column."""
    from headstart.batch_predict import predict_to_file
    from headstart.errors import ConfigError
    from headstart.predictions import expand_inputs
    from headstart.tta import tta_views as resolve_views

    parts = shard.split("/")
    k, n = (int(v) if v.isdigit() else -1 for v in parts) if len(parts) == 2 else (-1, 0)
    if not 0 <= k < n:
        raise ConfigError(f"--shard {shard!r}: give K/N with 0 <= K < N, e.g. 0/4 ... 3/4.")
    views = resolve_views(tta_views or tta)  # a bad view name fails before the model loads
    predictor = _predictor(run)
    predictor.tta = views

    if out_csv is not None:
        new, old = predict_to_file(predictor, [str(p) for p in inputs], out_csv, top_k, resume=resume, shard=(k, n))
        err.print(f"{new + old} predictions in {out_csv}")
        return
    for pred in predictor.iter_predict(expand_inputs([str(p) for p in inputs]), top_k=top_k):  # type: ignore[arg-type]
        if pred.error:
            typer.echo(f"{pred.source}\tunreadable: {pred.error}")
        else:
            typer.echo(f"{pred.source}\t" + "  ".join(f"{name} {p:.3f}" for name, p in pred.top))


def _predictor(run: Path):  # type: ignore[no-untyped-def]
    """The ONNX runtime for a .onnx file, or when torch is absent; else the run's eager model."""
    from headstart.runtime import RuntimePredictor, find_onnx

    onnx_path = find_onnx(run)
    if run.suffix == ".onnx" or (onnx_path is not None and not (run / "model.safetensors").is_file()):
        return RuntimePredictor.load(run)
    try:
        api = _training_api()
    except MissingExtraError:
        if onnx_path is None:
            raise MissingExtraError(
                f"{run} has no exported model and torch is not installed: export it where training is installed "
                f"('headstart export {run} --format onnx'), or pip install 'headstart[train]'."
            ) from None
        err.print(f"torch not installed: predicting with {onnx_path} (onnxruntime)")
        return RuntimePredictor.load(onnx_path)
    return api.Classifier.load(run).predictor()


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder from 'headstart train'."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", "-f", help="onnx (dynamic batch) or torchscript."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file. Default: RUN/export/model.onnx (or .pt)."),
) -> None:
    """Export the model with its classes and preprocessing inside, then check parity."""
    result = _training_api().Classifier.load(run).export(format.value, out_path)
    err.print(f"{result.parity.summary()}: ok")
    typer.echo(str(result.path))


@app.command()
def serve(
    run: Path = typer.Argument(..., help="A run folder, or an exported model.onnx."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind. 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000),
    backend: str = typer.Option("auto", help="auto (ONNX when RUN has an export, else torch), onnx or torch."),
    max_batch: int = typer.Option(8, help="Most images in one model call (CPU: 8; GPU: 32 or more)."),
    max_wait_ms: float = typer.Option(2.0, help="How long a request may wait for others to share its batch."),
    queue_size: int = typer.Option(256, help="Images waiting beyond this are answered 503."),
    threads: Optional[int] = typer.Option(None, help="Model threads. Default: all cores."),
) -> None:
    """A prediction server with a web page at / (FastAPI + uvicorn)."""
    try:
        from headstart.serve import ServeConfig, run_server
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"Serving needs {exc.name}: pip install 'headstart[serve]'.") from None
    cfg = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, threads=threads)
    run_server(run, host=host, port=port, backend=backend, config=cfg, console=err)


@app.command()
def demo(
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder. Default: runs/demo, never overwriting."),
) -> None:
    """Train on the bundled OpenClipart sample with the bundled EfficientNet-Lite0, offline."""
    api = _training_api()
    Classifier, default_run_dir = api.Classifier, api.default_run_dir

    data = Path(str(resources.files("headstart") / "demo_data" / "openclipart"))
    err.print(f"Demo: {data} (public-domain OpenClipart sample, see LICENSE.md there)")
    clf = Classifier(console=err).fit(data, out_dir or default_run_dir("demo"))  # every default
    from headstart.data.split import read_split

    held_out = read_split(clf.run_dir / "split.csv", clf.classes)["val"][::10][:4]  # type: ignore[operator]
    err.print("Some validation images (not trained on):")
    for pred in clf.predict([s.path for s in held_out], top_k=2):
        truth = Path(pred.source).parent.name
        err.print(f"  true {truth:<15} predicted " + ", ".join(f"{n} {p:.2f}" for n, p in pred.top))
    err.print(f"Next: headstart predict {clf.run_dir} IMAGE...   |   headstart evaluate {clf.run_dir} --data FOLDER")


@app.command("lr-find")
def lr_find(
    data: Path = typer.Argument(..., help="Folder or CSV, as for 'train'."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where lr_find.png/.json go. Default: ./lr-find-<data name>."),
    arch: str = typer.Option("tf_efficientnet_lite0", help="Any timm architecture, or convnet_tiny / convnet_small."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (.safetensors/.pth/.bin)."),
    head: Head = typer.Option(Head.linear, help="Head on the pooled features."),
    hidden: Optional[str] = typer.Option(None, help="Hidden widths, e.g. 256 (bottleneck) or 512,256 (mlp)."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels. Default: the architecture's."),
    optimizer: str = typer.Option("adamw", help="adamw, adam or sgd."),
    batch_size: int = typer.Option(32),
    val_fraction: float = typer.Option(0.2, help="Validation share when DATA has no val split (kept out of the sweep)."),
    seed: int = typer.Option(0),
    cache: bool = typer.Option(True, help="Use the decoded-image cache."),
) -> None:
    """Learning-rate range test of the head on the frozen base: a plot and a suggested --lr."""
    Classifier = _training_api().Classifier
    from headstart.config import ModelConfig, TrainConfig

    model = ModelConfig(arch=arch, weights=str(weights) if weights else None, head=head.value, hidden=_widths(hidden))
    cfg = TrainConfig(optimizer=optimizer, batch_size=batch_size, val_fraction=val_fraction, seed=seed)
    finding = Classifier(model=model, train=cfg, image_size=image_size, cache=cache, console=err).lr_find(data, out_dir)
    out.print(f"{finding.suggestion:.3g}")
    err.print(f"Next: headstart train {data} --lr {finding.suggestion:.2g}   (or --lr auto)")


@app.command()
def doctor(
    data: Path = typer.Argument(..., help="Folder or CSV, in any layout 'train' accepts. Only read, never changed."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where doctor.json and doctor.html go. Default: ./doctor-<data name>."),
    near: int = typer.Option(5, help="Near-duplicate threshold: differing bits of a 256-bit perceptual hash (-1: off)."),
    min_side: int = typer.Option(32, help="Report images with a side below this many pixels."),
    workers: Optional[int] = typer.Option(None, help="Reader threads. Default: 2 per core, at most 16."),
    labels: bool = typer.Option(False, "--labels", help="Also find images whose label is probably wrong (out-of-fold heads on frozen-base features; label_issues.csv)."),
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
        out.print(f"Label issues to review: [bold]{folder / CSV_NAME}[/] (then: headstart train DATA --exclude {folder / CSV_NAME})")
    out.print(f"Details in [bold]{folder / 'doctor.html'}[/] and {folder / 'doctor.json'}")


CACHE_PARTS = {"images": "decoded images", "features": "frozen-base features"}


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete headstart's caches (decoded images and frozen-base features)."""
    from headstart.data.store import cache_root

    for part in CACHE_PARTS:
        folder = cache_root() / part
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
        shutil.rmtree(folder, ignore_errors=True)
        err.print(f"Removed {folder} ({size / 1e6:.1f} MB)")


@cache_app.command("info")
def cache_info() -> None:
    """Where the caches are and how big."""
    from headstart.data.store import cache_root

    for part, what in CACHE_PARTS.items():
        folder = cache_root() / part
        files = [f for f in folder.glob("*.npy")] if folder.exists() else []
        size = sum(f.stat().st_size for f in files)
        out.print(f"{folder}: {len(files)} {what} entries, {size / 1e6:.1f} MB")
    out.print("HEADSTART_CACHE_DIR overrides the location; 'headstart cache clear' empties it.")


def _rank_prefix() -> str:
    """' rank N:' in a process of a multi-process run, so an error names its process."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" rank {os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0'))} of {world}:" if world > 1 else ""


def main() -> None:
    """Entry point: usage errors and HeadstartErrors become one line and an exit code."""
    try:
        app(standalone_mode=False)
    except HeadstartError as exc:
        err.print(f"[red]error:[/]{_rank_prefix()} {escape(str(exc))}", highlight=False, soft_wrap=True)  # '[train]' is not markup
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors (bad option, missing argument...)
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
