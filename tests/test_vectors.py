"""Arrow feature columns (Spark ML Vectors, numeric arrays) to numpy: no Spark."""

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.core.vectors import dense_features


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
