"""The frozen-phase feature cache persists across runs, keyed by weights and pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import headstart.engine.features as features
from headstart.data.store import cache_root
from headstart.engine.features import cached_features
from headstart.models.convnet import create_convnet
from headstart.preprocess import Preprocess

PRE = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture
def squares() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 28, 28, 3), dtype=np.uint8)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    seen: list[int] = []
    inner = features.extract_features

    def counting(backbone, squares, rows, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append(len(rows))
        return inner(backbone, squares, rows, *a, **kw)

    monkeypatch.setattr(features, "extract_features", counting)
    return seen


def base(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_convnet("convnet_tiny")


def test_second_request_reads_identical_features_from_disk(squares, calls):
    rows = np.arange(2, 9)
    first = cached_features(base(), squares, rows, PRE)
    second = cached_features(base(), squares, rows, PRE)
    assert calls == [7]  # computed once
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(second, features.extract_features(base(), squares, rows, PRE), rtol=0, atol=0)


@pytest.mark.parametrize("change", ["weights", "pixels", "rows", "preprocess"])
def test_anything_that_changes_the_features_is_a_new_entry(squares, calls, change):
    rows = np.arange(6)
    cached_features(base(), squares, rows, PRE)
    net, sq, pre = base(), squares.copy(), PRE
    if change == "weights":
        net = base(seed=1)
    elif change == "pixels":
        sq[3, 0, 0, 0] ^= 1
    elif change == "rows":
        rows = np.arange(1, 7)
    else:
        pre = Preprocess(input_size=24, resize_size=28, mean=(0.4,) * 3, std=(0.5,) * 3)
    cached_features(net, sq, rows, pre)
    assert calls == [6, 6]


def test_damaged_entry_is_recomputed_with_a_notice(squares, calls, capsys):
    rows = np.arange(5)
    good = cached_features(base(), squares, rows, PRE)
    (npy,) = (cache_root() / "features").glob("*.npy")
    data = bytearray(npy.read_bytes())
    data[-3] ^= 0xFF
    npy.write_bytes(bytes(data))
    again = cached_features(base(), squares, rows, PRE)
    assert calls == [5, 5] and "damaged" in capsys.readouterr().err
    torch.testing.assert_close(again, good, rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["truncated", "empty", "no_metadata"])
def test_truncated_entry_is_announced_in_one_line_and_rebuilt(squares, calls, capsys, damage):
    rows = np.arange(5)
    good = cached_features(base(), squares, rows, PRE)
    (npy,) = (cache_root() / "features").glob("*.npy")
    if damage == "truncated":
        npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    elif damage == "empty":
        npy.write_bytes(b"")
    else:
        npy.with_suffix(".json").unlink()
    again = cached_features(base(), squares, rows, PRE)
    err = capsys.readouterr().err
    assert calls == [5, 5] and "damaged" in err and "recomputing" in err and len(err.strip().splitlines()) == 1
    torch.testing.assert_close(again, good, rtol=0, atol=0)
    cached_features(base(), squares, rows, PRE)  # and the rebuilt entry is good: read, quietly
    assert calls == [5, 5] and capsys.readouterr().err == ""


def test_a_cache_clear_while_writing_is_told_as_such(squares, calls, monkeypatch, capsys):
    """Found by bench/faults.py crowd (a train paused as its features were written while
    `cache clear` ran): the notice said the cache could not be written, as for a broken folder."""
    import os
    import shutil

    folder, replace = cache_root() / "features", os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (shutil.rmtree(folder), replace(src, dst)))
    got = cached_features(base(), squares, np.arange(5), PRE)
    err = capsys.readouterr().err
    assert "cleared meanwhile" in err and "cannot write" not in err and len(err.strip().splitlines()) == 1
    torch.testing.assert_close(got, cached_features(base(), squares, np.arange(5), PRE, cache=False), rtol=0, atol=0)
    assert not folder.exists()  # the clear won


def test_cache_off_writes_nothing(squares, calls):
    cached_features(base(), squares, np.arange(4), PRE, cache=False)
    cached_features(base(), squares, np.arange(4), PRE, cache=False)
    assert calls == [4, 4] and not (cache_root() / "features").exists()


@pytest.mark.slow
def test_a_second_training_run_skips_the_base(tmp_path, make_images, tiny, calls):
    data = make_images(tmp_path / "data", per_class=5)
    first = tiny().fit(data, out=tmp_path / "a")
    n = len(calls)
    second = tiny().fit(data, out=tmp_path / "b")
    assert n == 2 and len(calls) == n  # train and val features, computed by the first run only
    assert first.metrics["val"].accuracy == second.metrics["val"].accuracy


@pytest.mark.slow
def test_training_on_cached_features_matches_training_on_images(tmp_path, make_images, tiny):
    """Phase 1 on stored features must equal phase 1 run through the frozen base on images
    (no augmentation, so both see the evaluation view): same split, same metrics."""
    from headstart.config import AugmentConfig, TrainConfig

    data = make_images(tmp_path / "data", per_class=6)
    results = {}
    for cached in (True, False):
        cfg = TrainConfig(
            frozen_epochs=3,
            finetune_epochs=0,
            batch_size=8,
            patience=0,
            lr=1e-2,
            num_workers=0,
            augment=AugmentConfig.none(),
            feature_cache=cached,
        )
        clf = tiny(train=cfg).fit(data, out=tmp_path / f"run-{cached}")
        head = {k: v.clone() for k, v in clf.artifact.network.head.state_dict().items()}
        results[cached] = (clf.metrics["val"], (clf.run_dir / "split.csv").read_text(), head)
    (fast, split_fast, head_fast), (slow, split_slow, head_slow) = results[True], results[False]
    assert split_fast == split_slow
    assert fast.accuracy == slow.accuracy and fast.macro_f1 == pytest.approx(slow.macro_f1, abs=1e-9)
    for name in head_fast:  # the same steps on the same inputs: the same head, up to float rounding
        torch.testing.assert_close(head_fast[name], head_slow[name], rtol=1e-4, atol=1e-5)


def test_training_views_are_seeded_cached_and_distinct_from_the_evaluation_view(squares, calls):
    from headstart.config import AugmentConfig

    rows, aug = np.arange(6), AugmentConfig(rotation=30.0)
    plain = cached_features(base(), squares, rows, PRE)
    view = cached_features(base(), squares, rows, PRE, augment=aug, seed=1)
    again = cached_features(base(), squares, rows, PRE, augment=aug, seed=1)
    other = cached_features(base(), squares, rows, PRE, augment=aug, seed=2)
    assert calls == [6, 6, 6]  # 'again' came from the cache
    torch.testing.assert_close(view, again, rtol=0, atol=0)
    assert not torch.allclose(view, plain) and not torch.allclose(view, other)


@pytest.mark.slow
def test_phase_one_on_several_views_sees_each_image_once_per_view(tmp_path, make_images, tiny, calls):
    from headstart.config import TrainConfig

    data = make_images(tmp_path / "data", per_class=5)
    cfg = TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=4, patience=0, num_workers=0, feature_views=3, oversample=True)
    clf = tiny(train=cfg).fit(data, out=tmp_path / "run")
    split = (clf.run_dir / "split.csv").read_text().splitlines()
    n_train = sum(1 for line in split if line.startswith("train,"))
    n_val = sum(1 for line in split if line.startswith("val,"))
    assert calls.count(n_train) == 3  # the evaluation view and two training views of the train split
    assert clf.metrics["val"].count == n_val > 0  # the finished run was evaluated on its whole val split
    assert (clf.run_dir / "model.safetensors").is_file()
