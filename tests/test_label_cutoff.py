"""The label-issue cut-off fitted on the data (label_issues/calibrate.py) and its expected precision."""

from __future__ import annotations

import numpy as np

from headstart.data.index import Sample
from headstart.engine.oof import out_of_fold_logits
from headstart.label_issues import LabelIssue, find_issues, read_csv, to_csv
from headstart.label_issues.calibrate import fit_temperature, noise_rate, wrong_posterior
from headstart.label_issues.html import render_section
from headstart.label_issues.rank import flag_calibrated, flag_multiclass


def separable(n_per_class: int = 100, classes: int = 4, flipped: int = 10, seed: int = 0):
    """(N, 64) well-separated clusters, labels, and the rows whose label was flipped."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n_per_class * classes) % classes
    features = rng.normal(0, 1, (classes, 64))[truth] * 6 + rng.normal(0, 1, (len(truth), 64))
    rows = rng.choice(len(truth), flipped, replace=False)
    given = truth.copy()
    given[rows] = (truth[rows] + rng.integers(1, classes, flipped)) % classes
    return features.astype(np.float32), given, set(rows.tolist())


def test_the_fitted_cut_off_lists_the_flipped_images_and_no_clean_one():
    features, given, flipped = separable()
    samples = [Sample(f"/d/{i}.png", (int(y),)) for i, y in enumerate(given)]
    found = find_issues(features, samples, ["a", "b", "c", "d"], "multiclass", "/d", neighbours=2)
    listed = {int(i.path.removeprefix("/d/").removesuffix(".png")) for i in found.issues}
    assert listed - flipped == set()  # no clean image listed
    assert len(listed & flipped) >= 8  # and most flipped ones are
    assert 0.3 <= found.summary["expected_precision"] <= 1.0  # the model's estimate: low on small, clean data
    assert found.summary["cutoff"]["flagged"] == len(found.issues)
    assert all(i.p_wrong is not None and 0 < i.p_wrong <= 1 for i in found.issues)
    assert found.issues[0].p_wrong == max(i.p_wrong for i in found.issues)  # most suspicious first


def test_the_fitted_list_does_not_depend_on_how_sure_the_heads_are():
    # The fixed 5 % floor lists more images as the heads grow surer of themselves (their L2
    # penalty, the data's size); the temperature undoes that, so the fitted list stays put.
    features, given, flipped = separable()
    logits = out_of_fold_logits(features, given, 4)
    lists, floors = [], []
    for sureness in (0.3, 1.0):
        z = logits * sureness
        flags, cutoff = flag_calibrated(z, given)
        lists.append([f.row for f in flags])
        p = np.exp(z - z.max(1, keepdims=True))
        floors.append(len(flag_multiclass(p / p.sum(1, keepdims=True), given)))
        assert cutoff.expected_precision is not None and cutoff.expected_precision >= cutoff.target_precision - 0.3
    assert lists[0] == lists[1] and set(lists[0]) <= flipped
    assert floors[0] < floors[1]  # less sure heads: the fixed floor misses flipped labels


def test_temperature_noise_rate_and_posterior():
    z = np.array([[2.0, 0.0]] * 8 + [[0.0, 2.0]] * 2)
    assert fit_temperature(z, np.array([0] * 8 + [1] * 2)) < 1  # right every time: sharpen
    assert fit_temperature(z, np.array([0, 1] * 5)) > 5  # right half the time: flatten
    w = wrong_posterior(np.array([0.001, 0.5, 0.999]), 10, 0.05)
    assert w[0] > 0.9 and w[2] < 0.01 and w[0] > w[1] > w[2]
    assert noise_rate(np.array([0.99] * 99 + [0.001]), 10) < 0.03


def test_expected_precision_is_shown_in_the_csv_and_the_page():
    features, given, _ = separable()
    samples = [Sample(f"/d/{i}.png", (int(y),)) for i, y in enumerate(given)]
    found = find_issues(features, samples, ["a", "b", "c", "d"], "multiclass", "/d", neighbours=0)
    html = str(render_section(found, shown=0))
    assert f"expected precision {found.summary['expected_precision']:.2f}" in html
    text = to_csv(found.issues, "/d")
    assert text.splitlines()[0].endswith("p_wrong,exclude")
    issue = LabelIssue("/d/x.png", "a", "b", "mislabelled", 0.01, 0.9, p_wrong=0.8123)
    assert to_csv([issue], "/d").splitlines()[1].endswith(",0.8123,true")


def test_p_wrong_reads_back(tmp_path):
    issue = LabelIssue(str(tmp_path / "x.png"), "a", "b", "mislabelled", 0.01, 0.9, p_wrong=0.8123)
    (tmp_path / "issues.csv").write_text(to_csv([issue], tmp_path))
    assert read_csv(tmp_path / "issues.csv", tmp_path) == [issue]
