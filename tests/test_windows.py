"""Windows, padding and densifying: numpy and Arrow only, no Spark."""

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.windows import (
    dense_features,
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
    probs = predict_block(forward, features, np.array([6]), window=4, stride=2, batch_windows=3, num_classes=2)
    # Windows start at 0 and 2; rows 2 and 3 are seen at steps (2, 0) and (3, 1).
    expected0 = np.array([0.0, 0.1, (0.2 + 0.0) / 2, (0.3 + 0.1) / 2, 0.2, 0.3]) + np.arange(6) / 100
    np.testing.assert_allclose(probs[:, 0], expected0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_dense_features_from_mixed_dense_and_sparse_vector_structs():
    structs = pa.array(
        [
            {"type": 1, "size": None, "indices": None, "values": [1.0, 2.0, 3.0]},
            {"type": 0, "size": 3, "indices": [2], "values": [5.0]},
            {"type": 0, "size": 3, "indices": [], "values": []},
            {"type": 0, "size": 3, "indices": [0, 1], "values": [7.0, 8.0]},
        ],
        type=pa.struct(
            [
                ("type", pa.int8()),
                ("size", pa.int32()),
                ("indices", pa.list_(pa.int32())),
                ("values", pa.list_(pa.float64())),
            ]
        ),
    )
    np.testing.assert_array_equal(
        dense_features(structs), [[1, 2, 3], [0, 0, 5], [0, 0, 0], [7, 8, 0]]
    )


def test_dense_features_from_arrays_and_length_check():
    ok = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))
    np.testing.assert_array_equal(dense_features(ok), [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="different lengths"):
        dense_features(pa.array([[1.0, 2.0], [3.0]]))
    with pytest.raises(ValueError, match="null"):
        dense_features(pa.array([[1.0, 2.0], None]))


def test_document_lengths_of_grouped_ids():
    assert document_lengths(pa.array(["a", "a", "b", "c", "c", "c"])).tolist() == [2, 1, 3]
    assert document_lengths(pa.array([7])).tolist() == [1]
    assert document_lengths(pa.array([], pa.string())).tolist() == []


def test_first_duplicate_position_only_within_a_document():
    from skol_spark.windows import first_duplicate_position

    ids = pa.array(["a", "a", "b", "b", "b"])
    assert first_duplicate_position(ids, np.array([0, 1, 1, 2, 3])) is None  # 'a'@1 and 'b'@1 differ
    assert first_duplicate_position(ids, np.array([0, 1, 0, 2, 2])) == 3
    assert first_duplicate_position(pa.array(["a"]), np.array([5])) is None
