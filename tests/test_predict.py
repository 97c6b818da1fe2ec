"""The executor module on its own: Arrow batches in, labels out, no Spark."""

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.core.windows import predict_block
from skol_spark.errors import InvalidRowError
from skol_spark.nn.network import build_network
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.transform import predict

D, K, W = 4, 3, 5


@pytest.fixture(scope="module")
def spec():
    net = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=5)
    return predict.PredictSpec(
        network=TrainedNetwork.from_keras(net),
        window_size=W,
        window_stride=3,
        predict_batch_size=4,
        num_classes=K,
        num_features=D,
        features_col="features",
        doc_id_col="doc_id",
        position_col="line_number",
    ), net


def _batches(doc_ids, features, sizes):
    rows = pa.StructArray.from_arrays(
        [
            pa.array(doc_ids),
            pa.array(np.concatenate([np.arange(n) for n in _runs(doc_ids)])),
            pa.array(list(features), pa.list_(pa.float32())),
        ],
        names=["doc_id", "line_number", "features"],
    )
    out, lo = [], 0
    for size in sizes:
        out.append(rows.slice(lo, size))
        lo += size
    return out


def _runs(ids):
    runs, count = [], 1
    for a, b in zip(ids[:-1], ids[1:]):
        if a == b:
            count += 1
        else:
            runs.append(count)
            count = 1
    return runs + [count]


def test_documents_split_across_batches_match_whole_block(spec):
    spec, net = spec
    ids = ["a"] * 12 + ["b"] + ["c"] * 7
    features = np.random.default_rng(1).normal(size=(len(ids), D)).astype("float32")
    outputs = list(predict.label_partition(spec, iter(_batches(ids, features, [5, 5, 3, 7]))))
    assert sum(len(o) for o in outputs) == len(ids)
    table = pa.Table.from_struct_array(pa.chunked_array(outputs))
    probs = np.stack([np.asarray(v["values"]) for v in table.column("probability").to_pylist()])
    expected = predict_block(
        lambda x, m: net([x, m], training=False).numpy(), features, np.array([12, 1, 7]), W, 3, 4, K
    )
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), probs.argmax(axis=1))
    raw = np.stack([np.asarray(v["values"]) for v in table.column("rawPrediction").to_pylist()])
    np.testing.assert_allclose(np.exp(raw), probs, rtol=1e-6)


def test_network_is_built_once_per_process_and_reused(spec):
    spec, _ = spec
    before = predict.build_count(spec.network.digest)
    ids = ["x"] * 9
    features = np.zeros((9, D), "float32")
    for _ in range(3):
        list(predict.label_partition(spec, iter(_batches(ids, features, [2, 3, 4]))))
    assert predict.build_count(spec.network.digest) - before <= 1
    assert predict.build_count(spec.network.digest) >= 1


def test_wrong_feature_length_and_duplicate_positions_are_named(spec):
    spec, _ = spec
    wrong = _batches(["a"] * 3, np.zeros((3, D + 1), "float32"), [3])
    with pytest.raises(
        InvalidRowError,
        match=r"column 'features': wrong feature length \(expected length 4\) at document 'a', line_number=0",
    ):
        list(predict.label_rows(spec, iter(wrong)))
    duplicate = pa.StructArray.from_arrays(
        [pa.array(["a", "a"]), pa.array([1, 1]), pa.array([[0.0] * D] * 2, pa.list_(pa.float32()))],
        names=["doc_id", "line_number", "features"],
    )
    with pytest.raises(InvalidRowError, match="column 'line_number': duplicate position at document 'a', line_number=1"):
        list(predict.label_rows(spec, iter([duplicate])))


@pytest.mark.parametrize("stride", [1, 3, 5])
@pytest.mark.parametrize("sizes", [[1] * 40, [2, 7, 1, 13, 3, 14], [6, 6, 6, 6, 6, 10], [40]])
def test_streaming_matches_whole_documents_at_any_batch_cut(spec, stride, sizes):
    """Windows run as rows arrive; the result equals labeling whole documents at once."""
    import dataclasses

    spec, net = spec
    spec = dataclasses.replace(spec, window_stride=stride)
    lengths = [17, 1, 5, 4, 6, 1, 1, 5]  # longer, shorter and exactly a window (W=5)
    ids = [name for name, n in zip("abcdefgh", lengths) for _ in range(n)]
    features = np.random.default_rng(2).normal(size=(len(ids), D)).astype("float32")
    outputs = list(predict.label_partition(spec, iter(_batches(ids, features, sizes))))
    probs = np.concatenate(
        [np.stack([np.asarray(v["values"]) for v in o.field("probability").to_pylist()]) for o in outputs]
    )
    expected = predict_block(
        lambda x, m: net([x, m], training=False).numpy(), features, np.array(lengths), W, stride, 4, K
    )
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_memory_is_bounded_by_the_window_not_the_document(spec):
    """A long document in small batches: each output lags its input by at most a window."""
    spec, _ = spec
    n, size = 2000, 50
    features = np.random.default_rng(3).normal(size=(n, D)).astype("float32")
    emitted = 0
    for i, out in enumerate(predict.label_partition(spec, iter(_batches(["long"] * n, features, [size] * (n // size))))):
        emitted += len(out)
        if emitted < n:
            assert (i + 1) * size - emitted <= W
    assert emitted == n
