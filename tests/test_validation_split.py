"""The validation split: window-sized segments of every document held out, the rest trained on."""

import numpy as np
import pytest

from skol_spark.core.windows import window_index
from skol_spark.fit.training import run_rows, split_validation


def _rows(offsets, lengths):
    return run_rows(offsets, lengths).tolist()


def _document_of(doc_lengths, rows):
    return np.searchsorted(np.cumsum(doc_lengths), rows, side="right")


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("doc_lengths", [[5000, 3000, 40, 7], [120, 1, 50, 49, 51, 300], [1] * 30])
def test_every_row_is_on_one_side_and_runs_stay_inside_their_document(doc_lengths, seed):
    split = split_validation(doc_lengths, 0.1, seed, 50)
    train, val = _rows(split.train_offsets, split.train_lengths), _rows(split.val_offsets, split.val_lengths)
    assert sorted(train + val) == list(range(sum(doc_lengths)))
    assert split.has_validation and val == split.val_rows.tolist()
    for offsets, lengths in ((split.train_offsets, split.train_lengths), (split.val_offsets, split.val_lengths)):
        assert (lengths > 0).all()
        first, last = _document_of(doc_lengths, offsets), _document_of(doc_lengths, offsets + lengths - 1)
        assert (first == last).all()


def test_about_the_fraction_is_held_out_from_every_long_document():
    # Two documents as long as whole journal volumes: a document-level split would hold out one of them whole.
    doc_lengths = [10_000, 6_000]
    for seed in range(5):
        split = split_validation(doc_lengths, 0.1, seed, 50)
        val = split.val_rows
        assert len(val) == pytest.approx(1600, abs=50)
        held = np.bincount(_document_of(doc_lengths, val), minlength=2)
        assert held[0] == pytest.approx(1000, rel=0.3) and held[1] == pytest.approx(600, rel=0.3)
    # Segments are aligned to the window: a held-out run starts where a training window would.
    assert (split.val_offsets % 50 == 0).all() and (split.val_lengths % 50 == 0).all()


def test_the_split_is_the_same_for_a_seed_and_differs_between_seeds():
    a, b, c = (split_validation([800, 900], 0.2, s, 50) for s in (3, 3, 4))
    assert a.val_offsets.tolist() == b.val_offsets.tolist() and a.val_lengths.tolist() == b.val_lengths.tolist()
    assert a.val_offsets.tolist() != c.val_offsets.tolist()


def test_nothing_is_held_out_without_a_fraction_or_with_one_segment():
    for doc_lengths, fraction in (([500, 20], 0.0), ([30], 0.5), ([50], 0.3)):
        split = split_validation(doc_lengths, fraction, 0, 50)
        assert not split.has_validation and split.val_rows.tolist() == []
        assert _rows(split.train_offsets, split.train_lengths) == list(range(sum(doc_lengths)))
    # Two segments: one is held out, never both.
    split = split_validation([60], 0.9, 0, 50)
    assert split.has_validation and 0 < len(split.val_rows) < 60


def test_without_validation_the_training_windows_are_the_documents_windows():
    doc_lengths = np.array([7, 120, 50, 51, 1])
    split = split_validation(doc_lengths, 0.0, 0, 16)
    starts, lengths = split.windows(False, 16)
    expected_starts, expected_lengths, _ = window_index(doc_lengths, 16, 16)
    assert starts.tolist() == expected_starts.tolist() and lengths.tolist() == expected_lengths.tolist()


def test_windows_cover_each_run_and_never_cross_its_ends():
    doc_lengths = [733, 12, 260]
    split = split_validation(doc_lengths, 0.3, 2, 25)
    for validation, (offsets, lengths) in (
        (False, (split.train_offsets, split.train_lengths)),
        (True, (split.val_offsets, split.val_lengths)),
    ):
        starts, real = split.windows(validation, 25)
        assert (real <= 25).all()
        covered = set()
        for start, n in zip(starts, real):
            run = int(np.searchsorted(offsets, start, side="right")) - 1
            assert offsets[run] <= start and start + n <= offsets[run] + lengths[run]
            covered.update(range(start, start + n))
        assert covered == set(run_rows(offsets, lengths).tolist())
