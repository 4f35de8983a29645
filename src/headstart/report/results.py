"""The results section of one split: scores, confusion, mistakes, Grad-CAM, calibration,
PR/ROC and the decision threshold, and what test-time augmentation changed."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from headstart.metrics import Metrics, predict_labels
from headstart.preprocess import center_crop
from headstart.report import analysis, figures
from headstart.report.gradcam import GradCam, overlay
from headstart.report.inputs import Figure, Problems, ReportInputs, data_uri, describe

GALLERY = 12  # most confidently wrong images shown per split
GRAD_CAMS = 6  # of those, how many get heat maps
THUMB = 128  # px, gallery thumbnails
CAM_SIDE = 176  # px, Grad-CAM panels
VIEW_NAMES = {"hflip": "horizontal flip", "vflip": "vertical flip", "crops": "four corner crops"}


def _scores(m: Metrics, cal: analysis.Calibration | None) -> list[tuple[str, str]]:
    rows = [
        ("images", f"{m.count:,}"),
        ("accuracy" if m.task != "multilabel" else "accuracy (per label)", f"{m.accuracy:.4f}"),
        ("balanced accuracy", f"{m.balanced_accuracy:.4f}"),
        ("macro precision", f"{m.macro('precision'):.4f}"),
        ("macro recall", f"{m.macro('recall'):.4f}"),
        ("macro F1", f"{m.macro_f1:.4f}"),
    ]
    if "subset_accuracy" in m.extra:
        rows.append(("exact-match accuracy (all labels right)", f"{m.extra['subset_accuracy']:.4f}"))
    if cal is not None:
        rows.append(("expected calibration error", f"{cal.ece:.4f}"))
    if m.threshold is not None:
        rows.append(("decision threshold", f"{m.threshold:g}"))
    return rows


def _thumb(inp: ReportInputs, split: str, index: int) -> str:
    square = inp.prepared.images.array[inp.prepared.rows[split][index]]
    return data_uri(figures.image_png(np.asarray(square), THUMB), "image/jpeg")


def _gallery(inp: ReportInputs, split: str, mistakes: list[analysis.Mistake], problems: Problems) -> list[dict[str, Any]]:
    samples = inp.prepared.samples[split]
    out = []
    for mk in mistakes:
        try:
            uri, error = _thumb(inp, split, mk.index), None
        except Exception as exc:
            problems.note(f"thumbnail of {samples[mk.index].path}", exc)
            uri, error = None, describe(exc)
        out.append(
            {
                "uri": uri,
                "error": error,
                "path": samples[mk.index].path,
                "name": _name(samples[mk.index].path),
                "true": ", ".join(mk.true) or "(no label)",
                "predicted": ", ".join(mk.predicted) or "(no label)",
                "probability": mk.probability,
                "p_true": mk.p_true,
                "note": mk.note,
            }
        )
    return out


def _grad_cams(inp: ReportInputs, split: str, mistakes: list[analysis.Mistake], problems: Problems) -> dict[str, Any]:
    """Heat maps for the first ``GRAD_CAMS`` mistakes: evidence for the wrong decision and,
    for single-label tasks, for the true class."""
    art = inp.artifact
    pre, classes = art.preprocess, art.classes
    chosen = mistakes[:GRAD_CAMS]
    if not chosen:
        return {"error": None, "rows": []}
    squares = np.stack([np.asarray(inp.prepared.images.array[inp.prepared.rows[split][mk.index]]) for mk in chosen])
    x = torch.from_numpy(pre.normalize(squares)).to(next(art.network.parameters()).device)
    try:
        cam = GradCam(art.network, x, art.task)
        wrong = cam.maps([mk.cam_class for mk in chosen])
        right = cam.maps([classes.index(mk.true[0]) for mk in chosen]) if art.task != "multilabel" else None
    except Exception as exc:  # e.g. a transformer without a spatial map: said once, in place
        problems.note("Grad-CAM", exc)
        return {"error": describe(exc), "rows": []}
    rows = []
    for i, mk in enumerate(chosen):
        crop = center_crop(squares[i], pre.input_size)
        panels = [{"caption": "input (centre crop)", "uri": _jpeg(crop)}]
        role = "predicted" if art.task != "multilabel" else ("predicted, wrongly" if "false positive" in mk.note else "missed")
        panels.append(_cam_panel(crop, wrong[i], f"evidence for '{classes[mk.cam_class]}' ({role})"))
        if right is not None:
            panels.append(_cam_panel(crop, right[i], f"evidence for '{mk.true[0]}' (true)"))
        rows.append({"name": _name(inp.prepared.samples[split][mk.index].path), "note": mk.note, "panels": panels})
    return {"error": None, "rows": rows}


def _jpeg(rgb: np.ndarray, side: int = CAM_SIDE) -> str:
    return data_uri(figures.image_png(rgb, side), "image/jpeg")


def _cam_panel(crop: np.ndarray, cam: np.ndarray, caption: str) -> dict[str, str]:
    if not cam.any():
        caption += ": none found"
    return {"caption": caption, "uri": _jpeg(overlay(crop, cam))}


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _tta_effect(inp: ReportInputs, split: str, m: Metrics, probs: np.ndarray, truth: np.ndarray) -> dict[str, Any] | None:
    if split not in inp.without_tta:
        return None
    plain, plain_probs = inp.without_tta[split]
    task, threshold = m.task, inp.artifact.threshold
    ece = [analysis.calibration(p, truth, task).ece for p in (plain_probs, probs)]
    rows = [
        ("accuracy", plain.accuracy, m.accuracy),
        ("balanced accuracy", plain.balanced_accuracy, m.balanced_accuracy),
        ("macro F1", plain.macro_f1, m.macro_f1),
        ("expected calibration error (lower is better)", ece[0], ece[1]),
    ]
    before, after = predict_labels(plain_probs, task, threshold), predict_labels(probs, task, threshold)
    if task == "multilabel":
        right_before, right_after = (before == truth), (after == truth)
        unit = "(image, label) decisions"
    else:
        right_before, right_after = before == truth.argmax(1), after == truth.argmax(1)
        unit = "images"
    changed = int((before != after).sum())
    fixed = int((~right_before & right_after).sum())
    broken = int((right_before & ~right_after).sum())
    return {
        "rows": rows,
        "changed": changed,
        "fixed": fixed,
        "broken": broken,
        "unit": unit,
        "views": [VIEW_NAMES.get(v, v) for v in inp.tta],
    }


def split_results(inp: ReportInputs, split: str, problems: Problems) -> dict[str, Any]:
    m = inp.metrics[split]
    probs = inp.probs[split]
    art = inp.artifact
    classes, task, threshold = art.classes, art.task, art.threshold
    truth = analysis.truth_matrix([s.labels for s in inp.prepared.samples[split]], len(classes))
    cal = problems.section("calibration", analysis.calibration, probs, truth, task)
    cal = cal if isinstance(cal, analysis.Calibration) else None
    out: dict[str, Any] = {
        "split": split,
        "task": task,
        "scores": _scores(m, cal),
        "per_class": m.per_class,
        "many": len(classes) > 20,
    }
    if task != "multilabel":
        matrix = np.asarray(m.confusion)
        out["confusion"] = [
            problems.figure(f"{split}: confusion matrix (counts)", figures.confusion_matrix, matrix, classes, False),
            problems.figure(f"{split}: confusion matrix (row-normalised)", figures.confusion_matrix, matrix, classes, True),
        ]
        out["pairs"] = problems.section("most-confused pairs", analysis.confused_pairs, matrix, classes)
    else:
        per_label = np.asarray(m.confusion)  # (K, 2, 2): [[tn, fp], [fn, tp]] per label
        out["label_confusion"] = [
            {"name": c, "tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tp": int(cm[1, 1])}
            for c, cm in zip(classes, per_label)
        ]
    mistakes = problems.section("mistakes", analysis.confident_mistakes, probs, truth, classes, task, threshold, GALLERY)
    if isinstance(mistakes, list):
        out["gallery"] = _gallery(inp, split, mistakes, problems)
        out["gradcam"] = problems.section("Grad-CAM", _grad_cams, inp, split, mistakes, problems)
    else:
        out["gallery_error"] = mistakes["error"]
    out["calibration"] = (
        problems.figure(f"{split}: reliability diagram", figures.reliability, cal, width=520)
        if cal is not None
        else Figure("reliability diagram", error="calibration could not be computed")
    )
    out["calibration_what"] = cal.what if cal is not None else ""
    if task != "multiclass":
        curves = problems.section(
            "PR/ROC curves", lambda: [analysis.curve(n, s, p, threshold) for n, s, p in analysis.score_columns(probs, truth, classes, task)]
        )
        if isinstance(curves, list):
            out["curves"] = problems.figure(f"{split}: precision-recall and ROC", figures.pr_roc, curves, threshold, width=1000)
            out["curve_rows"] = [
                {
                    "name": c.name,
                    "positives": c.positives,
                    "ap": c.average_precision,
                    "auc": c.roc_auc,
                    "precision": c.at_threshold[0],
                    "recall": c.at_threshold[1],
                }
                for c in curves
            ]
        out["thresholds"] = problems.section("threshold table", analysis.threshold_table, probs, truth, task, threshold)
        out["threshold"] = threshold
        out["positive"] = classes[1] if task == "binary" else None
    out["tta"] = problems.section("TTA comparison", _tta_effect, inp, split, m, probs, truth)
    return out
