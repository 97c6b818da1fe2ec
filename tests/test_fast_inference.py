"""The executors' compiled inference path (ONNX Runtime) against Keras, and its fallbacks."""

import json
import logging
import sys

import keras
import numpy as np
import pyarrow as pa
import pytest
from conftest import model_of, parts_of, predictions, small_model
from test_projection import _sparse_rows, _vector_column

from skol_spark import BiLSTMClassificationModel
from skol_spark.core.windows import window_rows
from skol_spark.nn import fast_forward
from skol_spark.nn.crf import crf_marginals, crf_marginals_numpy
from skol_spark.nn.fast_forward import OnnxForward, probe_difference, select_forward
from skol_spark.nn.network import build_network
from skol_spark.nn.onnx_graph import UnsupportedNetworkError, network_graph
from skol_spark.nn.projection import RowsForward
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.stages.params import INFERENCE_ENGINE_CONF
from skol_spark.transform import predict

W, D, K = 6, 30, 3

# Keras 3.3 (the Spark 3.5 LTS leg) has no keras.ops.scan, which the CRF layer runs on.
_CRF = pytest.mark.skipif(not hasattr(keras.ops, "scan"), reason="the CRF layer needs keras.ops.scan (Keras 3.4+)")
NETWORKS = {
    "softmax, projection": dict(embedding_size=5),
    "softmax, no projection": dict(embedding_size=0),
    "ensemble of 3": dict(embedding_size=4, ensemble_size=3),
    "crf, projection": dict(embedding_size=5, output_layer="crf"),
    "crf, no projection": dict(embedding_size=0, output_layer="crf"),
}
KINDS = [pytest.param(kind, marks=[_CRF] if "crf" in kind else []) for kind in NETWORKS]


def _network(seed=1, **kwargs):
    return build_network(W, D, K, hidden_size=4, num_layers=2, dropout=0.2, seed=seed, **kwargs)


def _spec(net, stride=W, engine="auto"):
    return predict.PredictSpec(
        network=TrainedNetwork.from_keras(net), window_size=W, window_stride=stride, predict_batch_size=4,
        num_classes=K, num_features=D, features_col="features", doc_id_col="doc_id", position_col="line_number",
        inference_engine=engine,
    )


def _label(spec, doc_lengths, column, cuts):
    ids = np.repeat([f"d{i}" for i in range(len(doc_lengths))], doc_lengths)
    positions = np.concatenate([np.arange(n) for n in doc_lengths])
    rows = pa.StructArray.from_arrays([pa.array(ids), pa.array(positions), column],
                                      names=["doc_id", "line_number", "features"])
    bounds = np.concatenate([[0], np.cumsum(cuts)])
    batches = [rows.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]
    out = pa.chunked_array(list(predict.label_rows(spec, iter(batches)))).combine_chunks()
    return np.stack([np.asarray(v["values"]) for v in out.field("probability").to_pylist()])


@pytest.fixture
def engine_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="skol_spark.transform.predict")
    return lambda: [r.getMessage() for r in caplog.records if "not on the compiled ONNX Runtime path" in r.getMessage()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse rows", "dense rows"])
def test_fast_path_labels_as_keras_does(kind, sparse, engine_warnings):
    """Masked tails (documents shorter than the window), overlapping windows, batch cuts mid-document."""
    net = _network(**NETWORKS[kind])
    lengths = np.array([14, 1, 9, 4, 6])
    dense, _ = _sparse_rows(int(lengths.sum()), D, 0.2, seed=3)
    column = _vector_column(dense, sparse=sparse)
    for stride in (W, 2):
        fast = _label(_spec(net, stride), lengths, column, [5, 11, 18])
        reference = _label(_spec(net, stride, engine="keras"), lengths, column, [34])
        np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=0)
    forward = predict.get_network(_spec(net).network, "/CPU:0", "auto")
    assert isinstance(forward, OnnxForward)
    assert isinstance(predict.get_network(_spec(net).network, "/CPU:0", "keras"), RowsForward)
    assert engine_warnings() == []


@pytest.mark.core
def test_the_graph_matches_keras_on_windows_with_masked_tails():
    net = _network(embedding_size=0)
    forward = OnnxForward(net, threads=1)
    assert forward.projection is None and probe_difference(forward) <= fast_forward.PROBE_TOLERANCE
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(20, D)).astype(np.float32)
    mask, index = window_rows(np.array([0, 3, 10, 19]), np.array([6, 2, 5, 1]), W)
    expected = keras.ops.convert_to_numpy(net([rows[np.maximum(index, 0)] * mask[..., None], mask], training=False))
    np.testing.assert_allclose(forward.from_rows(rows, index, mask)[mask], expected[mask], atol=1e-5)


@pytest.mark.parametrize("kind", ["ensemble of 3", pytest.param("crf, no projection", marks=_CRF)])
def test_the_graph_skol_spark_writes_is_valid_onnx(kind):
    """The protobuf skol_spark writes, read back by the onnx package and passed through its full checker."""
    onnx = pytest.importorskip("onnx")
    net = _network(**NETWORKS[kind])
    target = net.get_layer("sequence") if "ensemble" in kind else net
    model = onnx.load_from_string(network_graph(target).model)
    onnx.checker.check_model(model, full_check=True)
    assert (model.ir_version, model.opset_import[0].version) == (8, 17)
    assert [i.name for i in model.graph.input] == ["features", "rows", "mask"]
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == (6 if "ensemble" in kind else 2)
    assert {a.s for n in lstms for a in n.attribute if a.name == "direction"} == {b"bidirectional"}


@_CRF
def test_crf_marginals_in_numpy_equal_the_keras_layer():
    rng = np.random.default_rng(4)
    emissions = rng.normal(size=(5, 7, 3)).astype(np.float32)
    transitions, start, end = (rng.normal(size=s).astype(np.float32) for s in [(3, 3), (3,), (3,)])
    mask = np.arange(7)[None] < np.array([7, 4, 1, 6, 2])[:, None]
    expected = keras.ops.convert_to_numpy(crf_marginals(emissions, transitions, start, end, mask))
    np.testing.assert_allclose(crf_marginals_numpy(emissions, transitions, start, end, mask), expected, atol=1e-6)


def _gru_network():
    features = keras.Input((W, D))
    mask = keras.Input((W,), dtype="bool")
    x = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True, seed=1))(features, mask=mask)
    out = keras.layers.Dense(K, activation="softmax")(x)
    return keras.Model([features, mask], out)


def test_a_network_with_a_layer_it_does_not_translate_falls_back_with_one_warning(engine_warnings):
    net = _gru_network()
    with pytest.raises(UnsupportedNetworkError, match="Bidirectional over GRU"):
        network_graph(net)
    model = BiLSTMClassificationModel.fromKeras(net, labels=["a", "b", "c"], windowSize=W)
    spec = model._predict_spec()
    lengths = np.array([9, 3])
    column = _vector_column(_sparse_rows(12, D, 0.3, seed=1)[0], sparse=False)
    fallback = _label(spec, lengths, column, [12])
    _label(spec, lengths, column, [5, 7])  # the same worker again: cached, no second warning
    (message,) = engine_warnings()
    assert "Bidirectional over GRU" in message and model.trainedNetwork.digest[:12] in message
    reference = _label(_spec(net, engine="keras"), lengths, column, [12])
    np.testing.assert_allclose(fallback, reference, atol=1e-6)


def test_a_missing_package_falls_back_to_keras_and_says_which(monkeypatch, engine_warnings):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    net = _network(seed=11, embedding_size=5)
    forward = predict.get_network(TrainedNetwork.from_keras(net), "/CPU:0", "auto")
    assert isinstance(forward, RowsForward)
    (message,) = engine_warnings()
    assert "the onnxruntime package is not installed" in message and "skol_spark[fast]" in message


def test_a_mismatch_on_the_probe_falls_back_to_keras(monkeypatch):
    monkeypatch.setattr(fast_forward, "PROBE_TOLERANCE", 0.0)  # any rounding difference is a mismatch
    forward, reason = select_forward(_network(embedding_size=5), "/CPU:0", "auto")
    assert isinstance(forward, RowsForward)
    assert "predicts differently from Keras on the probe windows" in reason


def test_keras_engine_and_gpu_devices_take_keras_without_a_reason():
    net = _network(embedding_size=5)
    for device, engine in [("/CPU:0", "keras"), ("/GPU:0", "auto")]:
        forward, reason = select_forward(net, device, engine)
        assert reason is None and not isinstance(forward, OnnxForward)
    with pytest.raises(ValueError, match="Expected inferenceEngine one of 'auto', 'keras'. Received: 'onnx'"):
        select_forward(net, "/CPU:0", "onnx")


@pytest.mark.core
def test_inference_engine_param_and_spark_conf(spark, test_df):
    model = small_model()
    assert model.getInferenceEngine() == "auto" and model._predict_spec().inference_engine == "auto"
    assert model._predict_spec("keras").inference_engine == "keras"  # the session's conf wins
    assert model.copy({model.inferenceEngine: "keras"})._predict_spec("auto").inference_engine == "keras"
    with pytest.raises(ValueError, match="Expected inferenceEngine to be one of 'auto', 'keras'. Received"):
        model.setInferenceEngine("onnx")
    with pytest.raises(ValueError, match=f"Expected the Spark conf {INFERENCE_ENGINE_CONF} to be one of"):
        model._predict_spec("fast")

    fast = predictions(model, test_df)
    spark.conf.set(INFERENCE_ENGINE_CONF, "keras")
    try:
        forced = predictions(model, test_df)
        spark.conf.set(INFERENCE_ENGINE_CONF, "onnx")
        with pytest.raises(ValueError, match=f"{INFERENCE_ENGINE_CONF}.*Received: 'onnx'"):
            model.transform(test_df)
    finally:
        spark.conf.unset(INFERENCE_ENGINE_CONF)
    assert fast.keys() == forced.keys()
    assert max(np.abs(fast[k] - forced[k]).max() for k in fast) <= 1e-5


def test_inference_engine_is_saved_and_old_models_load_with_auto():

    model = small_model().setInferenceEngine("keras")
    metadata, body = parts_of(model)
    assert json.loads(metadata)["paramMap"]["inferenceEngine"] == "keras"
    assert model_of(metadata, body).getInferenceEngine() == "keras"
    old = json.loads(metadata)
    del old["paramMap"]["inferenceEngine"], old["defaultParamMap"]["inferenceEngine"]
    assert model_of(json.dumps(old), body, "old model").getInferenceEngine() == "auto"
