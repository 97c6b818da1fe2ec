"""Windows and padding: numpy and Arrow only, no Spark."""

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.core.windows import (
    document_lengths,
    gather_windows,
    predict_block,
    window_index,
    window_starts,
)


@pytest.mark.parametrize(
    "length, window, stride, expected",
    [
        (1, 5, 5, [0]),
        (5, 5, 5, [0]),
        (12, 5, 5, [0, 5, 7]),
        (10, 5, 5, [0, 5]),
        (9, 4, 2, [0, 2, 4, 5]),
    ],
)
def test_window_starts_cover_every_position(length, window, stride, expected):
    starts = window_starts(length, window, stride)
    assert starts.tolist() == expected
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()


def test_gather_windows_pads_with_zeros_and_marks_padding():
    features = np.arange(14, dtype=np.float32).reshape(7, 2)
    starts, lengths, docs = window_index(np.array([3, 4]), window=4, stride=4)
    assert starts.tolist() == [0, 3] and lengths.tolist() == [3, 4] and docs.tolist() == [0, 1]
    x, mask, rows = gather_windows(features, starts, lengths, 4)
    assert x.shape == (2, 4, 2)
    assert mask.tolist() == [[True, True, True, False], [True] * 4]
    assert rows[0].tolist() == [0, 1, 2, -1]
    np.testing.assert_array_equal(x[0, 3], [0, 0])
    np.testing.assert_array_equal(x[1], features[3:7])


def test_predict_block_averages_overlapping_windows():
    # A fake forward pass whose output reveals the window offset of each step.
    def forward(x, mask):
        probs = np.zeros(x.shape[:2] + (2,))
        probs[..., 0] = x[..., 0] / 100.0 + np.arange(x.shape[1]) / 10.0
        probs[..., 1] = 1 - probs[..., 0]
        return probs

    features = np.zeros((6, 1), dtype=np.float32)
    features[:, 0] = np.arange(6)
    probs = predict_block(forward, features, np.array([6]), window=4, stride=2, predict_batch_size=3, num_classes=2)
    # Windows start at 0 and 2; rows 2 and 3 are seen at steps (2, 0) and (3, 1).
    expected0 = np.array([0.0, 0.1, (0.2 + 0.0) / 2, (0.3 + 0.1) / 2, 0.2, 0.3]) + np.arange(6) / 100
    np.testing.assert_allclose(probs[:, 0], expected0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_document_lengths_of_grouped_ids():
    assert document_lengths(pa.array(["a", "a", "b", "c", "c", "c"])).tolist() == [2, 1, 3]
    assert document_lengths(pa.array([7])).tolist() == [1]
    assert document_lengths(pa.array([], pa.string())).tolist() == []
