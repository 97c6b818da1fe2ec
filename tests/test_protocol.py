"""The comparison protocol: folds of volumes and paired block-bootstrap intervals (numpy only)."""

import numpy as np
import pytest

from skol_spark.skol.protocol import (
    PUBLIC_VOLUMES,
    block_confusions,
    journal_folds,
    lovo_folds,
    macro_f1_of,
    paired_bootstrap,
)
from skol_spark.stages.evaluation import ClassificationReport


def test_lovo_holds_out_each_volume_once_and_trains_on_all_others():
    folds = lovo_folds()
    assert list(folds) == list(PUBLIC_VOLUMES)
    for held_out, (train, test) in folds.items():
        assert test == (held_out,)
        assert held_out not in train and set(train) | {held_out} == set(PUBLIC_VOLUMES)
        assert list(train) == [v for v in PUBLIC_VOLUMES if v != held_out]  # order kept
    assert lovo_folds(["A/1", "A/2"]) == {"A/1": (("A/2",), ("A/1",)), "A/2": (("A/1",), ("A/2",))}


def test_journal_folds_leave_each_journal_out():
    folds = journal_folds()
    assert list(folds) == ["Persoonia -> Mycotaxon", "Mycotaxon -> Persoonia"]
    train, test = folds["Mycotaxon -> Persoonia"]
    assert train == tuple(v for v in PUBLIC_VOLUMES if v.startswith("Mycotaxon/"))
    assert test == ("Persoonia/Vol016", "Persoonia/Vol017")
    three = journal_folds(["A/1", "B/1", "B/2", "C/1"])
    assert three["A + C -> B"] == (("A/1", "C/1"), ("B/1", "B/2"))
    assert set(three) == {"B + C -> A", "A + C -> B", "A + B -> C"}


@pytest.mark.parametrize("call, match", [
    (lambda: lovo_folds(["A/1"]), "Expected at least 2 volumes for leave-one-volume-out"),
    (lambda: lovo_folds(["A/1", "A/1"]), "Expected distinct volumes"),
    (lambda: journal_folds(["A/1", "A/2"]), "Expected volumes of at least two journals"),
    (lambda: journal_folds(["A/1", "volume"]), "Expected volumes named journal/volume. Received: 'volume'"),
])
def test_folds_refuse_what_cannot_be_split(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_block_confusions_cut_documents_into_consecutive_blocks():
    docs = ["a"] * 5 + ["b"] * 2
    positions = [0, 1, 2, 3, 4, 0, 1]
    truth = [0, 1, 1, 2, 0, 2, 2]
    predicted = [0, 1, 0, 2, 0, 1, 2]
    keys, blocks = block_confusions(docs, positions, truth, predicted, 3, block_size=2)
    assert keys == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert blocks.shape == (4, 3, 3)
    whole = np.zeros((3, 3), int)
    np.add.at(whole, (truth, predicted), 1)
    assert np.array_equal(blocks.sum(axis=0), whole)
    assert np.array_equal(blocks[1], [[0, 0, 0], [1, 0, 0], [0, 0, 1]])  # a: positions 2, 3
    assert blocks[3].sum() == 2 and blocks[3][2, 1] == 1


def test_block_confusions_refuse_bad_input():
    with pytest.raises(ValueError, match="Expected block_size >= 1. Received: 0"):
        block_confusions(["a"], [0], [0], [0], 2, block_size=0)
    with pytest.raises(ValueError, match="Expected docs, positions, truth and predicted of one length"):
        block_confusions(["a"], [0, 1], [0], [0], 2)
    with pytest.raises(ValueError, match=r"Expected predicted labels in \[0, 2\). Received: 0..2"):
        block_confusions(["a", "a"], [0, 1], [0, 1], [0, 2], 2)


def test_macro_f1_matches_the_classification_report():
    rng = np.random.default_rng(0)
    for _ in range(20):
        confusion = rng.integers(0, 30, size=(3, 3))
        confusion[rng.integers(3)] = 0  # sometimes a class with no true rows
        expected = ClassificationReport(["a", "b", "c"], confusion).macro_f1
        assert macro_f1_of(confusion) == pytest.approx(expected)
    assert macro_f1_of(np.stack([np.eye(3, dtype=int)] * 2)).tolist() == [1.0, 1.0]


def _blocks(rng, n_blocks, accuracy, k=3, size=50):
    """(blocks, K, K) of a labeler right with probability ``accuracy`` on random rows."""
    truth = rng.integers(0, k, size=n_blocks * size)
    wrong = rng.random(truth.size) > accuracy
    predicted = np.where(wrong, (truth + rng.integers(1, k, size=truth.size)) % k, truth)
    docs = [f"d{i // size}" for i in range(truth.size)]
    return block_confusions(docs, np.arange(truth.size) % size, truth, predicted, k, block_size=size)[1]


def test_bootstrap_of_identical_models_is_zero_and_of_a_better_one_excludes_zero():
    rng = np.random.default_rng(1)
    a = {"f1": _blocks(rng, 40, 0.9), "f2": _blocks(rng, 30, 0.9)}
    same = paired_bootstrap(a, a, resamples=300)
    assert same.difference == same.low == same.high == 0.0 and not same.excludes_zero()
    worse = {"f1": _blocks(rng, 40, 0.7), "f2": _blocks(rng, 30, 0.7)}
    gain = paired_bootstrap(a, worse, resamples=300)
    assert gain.low > 0 and gain.excludes_zero() and gain.low < gain.difference < gain.high
    assert gain.units == 70 and gain.resamples == 300 and gain.level == 0.95
    expected = np.mean([macro_f1_of(a[f].sum(0)) - macro_f1_of(worse[f].sum(0)) for f in a])
    assert gain.difference == pytest.approx(expected)
    pooled = paired_bootstrap(a, worse, "pooled", resamples=300)
    whole = lambda x: macro_f1_of(x["f1"].sum(0) + x["f2"].sum(0))  # noqa: E731
    assert pooled.difference == pytest.approx(whole(a) - whole(worse))
    assert "[+" in gain.format() and gain.to_dict()["units"] == 70


def test_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(2)
    a = [_blocks(rng, 60, 0.85)]
    # b differs from a on a few rows only: paired resampling gives a narrow interval.
    b = [a[0].copy()]
    b[0][:5] = _blocks(rng, 5, 0.6)
    narrow = paired_bootstrap(a, b, resamples=500, seed=3)
    unpaired_like = paired_bootstrap(a, [_blocks(rng, 60, 0.85)], resamples=500, seed=3)
    assert narrow.high - narrow.low < unpaired_like.high - unpaired_like.low
    assert paired_bootstrap(a, b, resamples=500, seed=3) == narrow


def test_bootstrap_averages_a_models_seeds():
    rng = np.random.default_rng(4)
    seeds = np.stack([_blocks(rng, 30, 0.9), _blocks(rng, 30, 0.8)])  # (seeds, blocks, K, K)
    base = _blocks(rng, 30, 0.7)
    interval = paired_bootstrap([seeds], [base], "pooled", resamples=200)
    expected = np.mean([macro_f1_of(s.sum(0)) for s in seeds]) - macro_f1_of(base.sum(0))
    assert interval.difference == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(statistic="median"), "Expected statistic 'mean' or 'pooled'. Received: 'median'"),
    (dict(level=1.0), r"Expected level in \(0, 1\). Received: 1.0"),
    (dict(resamples=0), "Expected resamples >= 1. Received: 0"),
])
def test_bootstrap_refuses_bad_settings(kwargs, match):
    a = [np.ones((2, 3, 3), int)]
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, a, **kwargs)


def test_bootstrap_refuses_mismatched_folds():
    a = {"f1": np.ones((2, 3, 3), int)}
    with pytest.raises(ValueError, match="Expected a and b to hold the same folds"):
        paired_bootstrap(a, {"f2": a["f1"]})
    with pytest.raises(ValueError, match="Expected both models' block confusions of a fold to have one shape"):
        paired_bootstrap([a["f1"]], [np.ones((3, 3, 3), int)])
