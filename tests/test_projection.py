"""The per-position input projection: shapes, the executors' sparse path, sparse training, old saves."""

from pathlib import Path

import keras
import numpy as np
import pyarrow as pa
import pytest
from conftest import sparse_rows as _sparse_rows

from skol_spark.core.windows import predict_block, window_index, window_rows
from skol_spark.errors import InvalidRowError
from skol_spark.fit.sparse_training import batch_inputs, sparse_training_model
from skol_spark.fit.training import (
    TrainingConfig,
    _SparseWindowBatches,
    _WindowBatches,
    train_network,
)
from skol_spark.fit.training_data import FeatureRows, TrainingData
from skol_spark.nn.network import build_network
from skol_spark.nn.projection import split_network
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.transform import predict

W, D, K, E = 6, 40, 3, 5
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _vector_column(dense, sparse):
    """Spark's VectorUDT struct for each row: sparse vectors, or dense ones."""
    n, width = dense.shape
    nonzero = [np.flatnonzero(row) for row in dense]
    if sparse:
        kind, size = np.zeros(n, np.int8), pa.array(np.full(n, width, np.int32))
        indices = pa.array([ix.tolist() for ix in nonzero], pa.list_(pa.int32()))
        values = pa.array([row[ix].tolist() for row, ix in zip(dense, nonzero)], pa.list_(pa.float64()))
    else:
        kind, size = np.ones(n, np.int8), pa.nulls(n, pa.int32())
        indices = pa.nulls(n, pa.list_(pa.int32()))
        values = pa.array(dense.astype(np.float64).tolist(), pa.list_(pa.float64()))
    return pa.StructArray.from_arrays(
        [pa.array(kind), size, indices, values], names=["type", "size", "indices", "values"]
    )


def _spec(net, stride=W):
    return predict.PredictSpec(
        network=TrainedNetwork.from_keras(net),
        window_size=W,
        window_stride=stride,
        predict_batch_size=4,
        num_classes=K,
        num_features=net.inputs[0].shape[-1],
        features_col="features",
        doc_id_col="doc_id",
        position_col="line_number",
    )


def _label(spec, doc_lengths, column, cuts):
    ids = np.repeat([f"d{i}" for i in range(len(doc_lengths))], doc_lengths)
    positions = np.concatenate([np.arange(n) for n in doc_lengths])
    rows = pa.StructArray.from_arrays(
        [pa.array(ids), pa.array(positions), column], names=["doc_id", "line_number", "features"]
    )
    batches, lo = [], 0
    for size in cuts:
        batches.append(rows.slice(lo, size))
        lo += size
    out = pa.chunked_array(list(predict.label_rows(spec, iter(batches))))
    return np.stack([np.asarray(v["values"]) for v in out.combine_chunks().field("probability").to_pylist()])


def _whole_documents(net, dense, doc_lengths):
    """The whole network in plain Keras, window by window of each document, overlaps averaged."""
    sums, counts, lo = np.zeros((len(dense), K)), np.zeros(len(dense)), 0
    for n in doc_lengths:
        starts = sorted(set(list(range(0, max(1, n - W + 1), W)) + [max(0, n - W)]))
        for s in starts:
            real = min(W, n - s)
            x = np.zeros((1, W, dense.shape[1]), np.float32)
            x[0, :real] = dense[lo + s : lo + s + real]
            mask = np.arange(W)[None] < real
            sums[lo + s : lo + s + real] += keras.ops.convert_to_numpy(net([x, mask], training=False))[0, :real]
            counts[lo + s : lo + s + real] += 1
        lo += n
    return sums / counts[:, None]


@pytest.mark.parametrize("embedding, output", [(0, "softmax"), (E, "softmax"), (E, "crf")])
def test_projection_on_and_off_give_the_right_shapes(embedding, output):
    net = build_network(
        W, D, K, hidden_size=4, num_layers=2, dropout=0.0, seed=1, output_layer=output, embedding_size=embedding
    )
    x, mask = np.zeros((3, W, D), np.float32), np.ones((3, W), bool)
    assert tuple(net([x, mask]).shape) == (3, W, K)
    split = split_network(net)
    if output == "crf":  # projection inline, layers flat (the CRF trainer finds them by name)
        assert split is None and net.get_layer("projection").kernel.shape == (D, E)
    elif embedding:
        projection, sequence = split
        assert projection.kernel.shape == (D, E)
        assert tuple(sequence.inputs[0].shape) == (None, W, E)
    else:
        assert split is None
    with pytest.raises(ValueError, match="Expected embedding_size >= 0. Received: embedding_size=-1"):
        build_network(W, D, K, embedding_size=-1)


def test_executor_sparse_path_equals_dense_path_and_plain_keras_over_whole_documents():
    net = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=2, embedding_size=E)
    lengths = np.array([14, 1, 9, 6])
    dense, _ = _sparse_rows(int(lengths.sum()), D, 0.1, seed=3)
    spec = _spec(net)
    sparse_probs = _label(spec, lengths, _vector_column(dense, sparse=True), [5, 11, 14])
    dense_probs = _label(spec, lengths, _vector_column(dense, sparse=False), [30])
    forward = predict.get_network(spec.network)
    assert forward.projection is not None and forward.projection.units == E
    np.testing.assert_allclose(sparse_probs, dense_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sparse_probs, _whole_documents(net, dense, lengths), rtol=1e-4, atol=1e-5)


def test_executor_with_overlapping_windows_matches_the_whole_network_per_window():
    net = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=4, embedding_size=E)
    lengths = np.array([17, 8])
    dense, _ = _sparse_rows(int(lengths.sum()), D, 0.1, seed=5)
    probs = _label(_spec(net, stride=2), lengths, _vector_column(dense, sparse=True), [7, 18])
    whole = lambda x, m: keras.ops.convert_to_numpy(net([x, m], training=False))  # noqa: E731
    np.testing.assert_allclose(probs, predict_block(whole, dense, lengths, W, 2, 4, K), rtol=1e-4, atol=1e-5)


def test_executor_names_a_sparse_vector_of_the_wrong_length():
    net = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=2, embedding_size=E)
    dense, _ = _sparse_rows(4, D + 1, 0.2, seed=1)
    with pytest.raises(InvalidRowError, match=rf"wrong feature length \(expected length {D}\) at document 'd0', line_number=0"):
        _label(_spec(net), np.array([4]), _vector_column(dense, sparse=True), [4])


def _sparse_data(lengths, width=D, seed=0):
    dense, csr = _sparse_rows(int(np.sum(lengths)), width, 0.1, seed)
    labels = np.random.default_rng(seed).integers(0, K, len(dense))
    return dense, TrainingData(FeatureRows(np.arange(len(dense)), width, csr=csr), labels, np.asarray(lengths))


def test_sparse_training_batches_hold_sparse_rows_and_no_dense_window_tensor():
    import tensorflow as tf

    dense, data = _sparse_data([13, 4, 9])
    starts, lengths, _ = window_index(data.doc_lengths, W, W)
    batches = _SparseWindowBatches(data, starts, lengths, W, batch_size=3)
    for i in range(len(batches)):
        inputs, y, weights = batches[i]
        rows, columns, index, mask = inputs["rows"], inputs["columns"], inputs["row_index"], inputs["mask"]
        # Only the columns the batch uses, each once and in order.
        assert isinstance(rows, tf.SparseTensor) and rows.shape[1] == len(columns) < D
        assert np.all(np.diff(columns) > 0) and columns.dtype == np.int32
        assert all(v.ndim <= 2 for k, v in inputs.items() if k != "rows")  # nothing (B, W, D)
        assert index.shape == mask.shape == y.shape == weights.shape
        # The sparse rows, put back in their columns and gathered by the index, are the dense batch's windows.
        expected, expected_mask, _ = _WindowBatches(data, starts, lengths, W, batch_size=3).inputs(
            starts[i * 3 : (i + 1) * 3], lengths[i * 3 : (i + 1) * 3]
        )
        full = np.zeros((rows.shape[0], D), np.float32)
        full[:, columns] = tf.sparse.to_dense(rows).numpy()
        gathered = full[index] * mask[..., None]
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_allclose(gathered, expected["features"])


def test_fit_on_sparse_rows_trains_the_projection_and_predicts_like_the_whole_network():
    dense, data = _sparse_data([30, 12, 25, 40], seed=1)
    config = TrainingConfig(
        window_size=W, num_classes=K, class_weights=[1.0] * K, hidden_size=4, embedding_size=E, num_layers=1,
        dropout=0.0, epochs=2, batch_size=32, learning_rate=0.05, seed=0, validation_fraction=0.25,
        predict_batch_size=4, output_layer="softmax", early_stopping_patience=0,
    )
    untrained = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=0, embedding_size=E)
    network, history = train_network(data, config)
    assert set(history) >= {"loss", "val_loss", "val_macro_f1"}
    kernel = split_network(network)[0].kernel.numpy()
    assert not np.allclose(kernel, split_network(untrained)[0].kernel.numpy())
    whole = lambda x, m: keras.ops.convert_to_numpy(network([x, m], training=False))  # noqa: E731
    probs = _label(_spec(network), data.doc_lengths, _vector_column(dense, sparse=True), [50, 57])
    np.testing.assert_allclose(probs, predict_block(whole, dense, data.doc_lengths, W, W, 4, K), rtol=1e-4, atol=1e-5)


def test_sparse_training_model_computes_the_network_and_its_kernel_gradient_names_only_used_columns():
    import tensorflow as tf

    dense, data = _sparse_data([13, 4, 9], seed=2)
    network = build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=0, embedding_size=E)
    trainer = sparse_training_model(network)
    starts, lengths, _ = window_index(data.doc_lengths, W, W)
    mask, rows = window_rows(starts, lengths, W)
    inputs = {
        name: value if isinstance(value, tf.SparseTensor) else tf.convert_to_tensor(value)
        for name, value in batch_inputs(data, rows, mask).items()
    }
    x = _WindowBatches(data, starts, lengths, W, batch_size=len(starts)).inputs(starts, lengths)[0]["features"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trainer(inputs)) * mask[..., None],
        keras.ops.convert_to_numpy(network([x, mask])) * mask[..., None],
        rtol=1e-5, atol=1e-6,
    )
    kernel = split_network(network)[0].kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(trainer(inputs))
    gradient = tape.gradient(loss, kernel.value)
    assert isinstance(gradient, tf.IndexedSlices)
    assert set(gradient.indices.numpy()) == set(np.flatnonzero(np.abs(dense[rows[mask]]).sum(axis=0)))


def test_lazy_adam_updates_only_the_rows_a_sparse_gradient_names():
    import tensorflow as tf

    from skol_spark.fit.sparse_training import LazyAdam

    start = np.arange(12, dtype=np.float32).reshape(4, 3)
    lazy, dense = keras.Variable(start), keras.Variable(start)
    lazy_adam, dense_adam = LazyAdam(learning_rate=0.1), keras.optimizers.Adam(learning_rate=0.1)
    first = tf.IndexedSlices(tf.constant([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]]), tf.constant([0, 2]), tf.constant([4, 3]))
    lazy_adam.apply_gradients([(first, lazy)])
    dense_adam.apply_gradients([(tf.convert_to_tensor(first), dense)])
    # From zero moments, the rows a gradient leaves out do not move under Adam either.
    np.testing.assert_allclose(lazy.numpy(), dense.numpy(), atol=1e-5)
    np.testing.assert_array_equal(lazy.numpy()[[1, 3]], start[[1, 3]])
    after_first = lazy.numpy().copy()
    # Repeated rows are summed, as a dense gradient would add them.
    second = tf.IndexedSlices(tf.constant([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]]), tf.constant([1, 1]), tf.constant([4, 3]))
    lazy_adam.apply_gradients([(second, lazy)])
    dense_adam.apply_gradients([(tf.convert_to_tensor(second), dense)])
    np.testing.assert_allclose(lazy.numpy()[1], dense.numpy()[1], atol=1e-5)
    # Rows 0 and 2 keep their weights (dense Adam moves them by their momentum); row 3 was never used.
    np.testing.assert_array_equal(lazy.numpy()[[0, 2]], after_first[[0, 2]])
    assert not np.allclose(dense.numpy()[[0, 2]], after_first[[0, 2]])
    np.testing.assert_array_equal(lazy.numpy()[3], start[3])


def test_format_1_model_has_no_projection_and_saves_again_as_format_2(spark, tmp_path):
    from pyspark.ml.functions import array_to_vector

    from skol_spark import BiLSTMClassificationModel

    recorded = np.load(FIXTURES / "model_format1_predictions.npz")
    model = BiLSTMClassificationModel.load(str(FIXTURES / "model_format1"))
    assert model.getEmbeddingSize() == 0 and split_network(model.getKerasModel()) is None
    rows = [
        (str(d), int(p), [float(x) for x in f])
        for d, p, f in zip(recorded["doc_id"], recorded["line_number"], recorded["features"])
    ]
    df = spark.createDataFrame(rows, "doc_id string, line_number int, features array<double>")
    df = df.withColumn("features", array_to_vector("features"))
    model.save(str(tmp_path / "v2"))
    again = BiLSTMClassificationModel.load(str(tmp_path / "v2"))
    assert again.getEmbeddingSize() == 0
    out = again.transform(df).orderBy("doc_id", "line_number").collect()
    np.testing.assert_allclose(np.array([o.probability.toArray() for o in out]), recorded["probability"], atol=1e-5)


def test_sparse_fit_transform_and_round_trips(spark, tmp_path, redis_url):
    from pyspark.ml.linalg import Vectors

    from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier

    dense, data = _sparse_data([20, 15, 30, 11], width=64, seed=7)
    ids = np.repeat([f"d{i}" for i in range(len(data.doc_lengths))], data.doc_lengths)
    positions = np.concatenate([np.arange(n) for n in data.doc_lengths])
    rows = [
        (str(d), int(p), float(y), Vectors.sparse(64, np.flatnonzero(x).tolist(), x[x != 0].tolist()))
        for d, p, y, x in zip(ids, positions, data.labels, dense)
    ]
    df = spark.createDataFrame(rows, ["doc_id", "line_number", "label", "features"])
    model = BiLSTMClassifier(
        windowSize=W, hiddenSize=4, numLayers=1, embeddingSize=E, ensembleSize=1, epochs=1, dropout=0.0,
        labels=["a", "b", "c"],
    ).fit(df)
    net = model.getKerasModel()
    assert split_network(net)[0].units == E and model.getEmbeddingSize() == E

    def probabilities(m):
        out = m.transform(df).orderBy("doc_id", "line_number").collect()
        return np.array([o["probability"].toArray() for o in out])

    expected = probabilities(model)
    order = np.lexsort((positions, ids))
    whole = lambda x, m: keras.ops.convert_to_numpy(net([x, m], training=False))  # noqa: E731
    by_keras = predict_block(whole, dense, data.doc_lengths, W, W, 4, K)
    np.testing.assert_allclose(expected, by_keras[order], rtol=1e-4, atol=1e-5)
    model.save(str(tmp_path / "dir"))
    np.testing.assert_allclose(probabilities(BiLSTMClassificationModel.load(str(tmp_path / "dir"))), expected, rtol=1e-5, atol=1e-6)
    model.saveToRedis(redis_url, "skol:projected")
    np.testing.assert_allclose(
        probabilities(BiLSTMClassificationModel.loadFromRedis(redis_url, "skol:projected")), expected, rtol=1e-5, atol=1e-6
    )
    model.saveKeras(str(tmp_path / "net.keras"))
    wrapped = BiLSTMClassificationModel.fromKeras(str(tmp_path / "net.keras"), labels=["a", "b", "c"])
    assert wrapped.getEmbeddingSize() == E
    np.testing.assert_allclose(probabilities(wrapped), expected, rtol=1e-5, atol=1e-6)


def test_an_unknown_format_version_is_refused_and_names_the_readable_ones(spark, tmp_path):
    import shutil

    from skol_spark import BiLSTMClassificationModel
    from skol_spark.errors import CorruptModelError

    target = tmp_path / "v99"
    shutil.copytree(FIXTURES / "model_format1", target)
    (part,) = (target / "metadata").glob("part-*")
    part.write_text(part.read_text().replace('"formatVersion":1', '"formatVersion":99'))
    for crc in (target / "metadata").glob(".*.crc"):
        crc.unlink()
    with pytest.raises(CorruptModelError, match="unsupported skol_spark format version 99; this version reads 1, 2"):
        BiLSTMClassificationModel.load(str(target))
