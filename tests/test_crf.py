"""The linear-chain CRF output layer (skol_spark.nn.crf): its algorithms against brute force,
its masking, its serialization, and BiLSTMClassifier(outputLayer="crf") end to end."""

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import assert_same_predictions, predictions
from pyspark.ml import Pipeline, PipelineModel

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.nn.crf import (
    CRF,
    CRFTrainer,
    crf_conditional_log_probs,
    crf_log_partition,
    crf_marginals,
    crf_weighted_nll,
    emission_model,
    viterbi_decode,
)
from skol_spark.nn.network import build_network, model_from_json
from skol_spark.nn.trained_network import weights_to_bytes

K = 3
ROOT = Path(__file__).resolve().parents[1]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _problem(seed, batch=6, width=4):
    rng = np.random.default_rng(seed)
    emissions = rng.normal(size=(batch, width, K)).astype(np.float32)
    transitions = rng.normal(size=(K, K)).astype(np.float32)
    start, end = rng.normal(size=K).astype(np.float32), rng.normal(size=K).astype(np.float32)
    mask = rng.random((batch, width)) > 0.35
    mask[0], mask[1] = True, False  # one full window, one all padding
    if width >= 3:
        mask[2] = [True, False] + [True] * (width - 2)  # a hole inside the window
    labels = rng.integers(0, K, size=(batch, width))
    return emissions, transitions, start, end, mask, labels


def _path_score(e, path, steps, transitions, start, end):
    score = start[path[0]] + end[path[-1]] + sum(e[t, y] for t, y in zip(steps, path))
    return score + sum(transitions[a, b] for a, b in zip(path, path[1:]))


def _brute_force(e, mask, transitions, start, end):
    """(log Z, marginals at real steps, best path) by enumerating every label path of the real steps."""
    steps = np.flatnonzero(mask)
    paths = list(itertools.product(range(K), repeat=len(steps)))
    scores = np.array([_path_score(e, p, steps, transitions, start, end) for p in paths], dtype=np.float64)
    log_z = np.log(np.exp(scores - scores.max()).sum()) + scores.max()
    marginals = np.zeros((len(steps), K))
    for path, p in zip(paths, np.exp(scores - log_z)):
        marginals[np.arange(len(steps)), list(path)] += p
    return log_z, marginals, paths[int(scores.argmax())]


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_partition_marginals_viterbi_and_likelihood_match_brute_force(width):
    e, transitions, start, end, mask, labels = _problem(width, width=width)
    log_z = _np(crf_log_partition(e, transitions, start, end, mask))
    marginals = _np(crf_marginals(e, transitions, start, end, mask))
    best = viterbi_decode(e, transitions, start, end, mask)
    logp = _np(crf_conditional_log_probs(e, labels, transitions, start, end, mask))
    for b in range(len(e)):
        steps = np.flatnonzero(mask[b])
        if not len(steps):
            assert log_z[b] == 0.0 and np.allclose(marginals[b], 1 / K) and np.all(logp[b] == 0)
            continue
        expected_z, expected_marginals, expected_path = _brute_force(e[b], mask[b], transitions, start, end)
        assert log_z[b] == pytest.approx(expected_z, abs=1e-4)
        assert np.allclose(marginals[b][steps], expected_marginals, atol=1e-5)
        assert np.allclose(marginals[b].sum(axis=-1), 1.0, atol=1e-6)
        assert np.allclose(marginals[b][~mask[b]], 1 / K)
        assert tuple(best[b][steps]) == expected_path
        gold = labels[b][steps]
        # The per-position terms are the chain rule of log p(y | x): they sum to it.
        expected_logp = _path_score(e[b], gold, steps, transitions, start, end) - expected_z
        assert logp[b].sum() == pytest.approx(expected_logp, abs=1e-4)
        assert np.all(logp[b][~mask[b]] == 0)


def test_masked_steps_change_nothing_for_the_real_ones():
    e, transitions, start, end, _, labels = _problem(7, batch=4, width=4)
    mask = np.ones((4, 4), bool)
    # The same windows with masked steps of arbitrary emissions inserted at the front, middle and end.
    where = [0, 2, 2, 4, 4, 4]
    padded_e = np.insert(e, where, 50.0 * np.random.default_rng(1).normal(size=(4, len(where), K)), axis=1)
    padded_mask = np.insert(mask, where, False, axis=1)
    padded_labels = np.insert(labels, where, 1, axis=1)
    real = padded_mask[0]
    assert np.allclose(_np(crf_log_partition(padded_e, transitions, start, end, padded_mask)),
                       _np(crf_log_partition(e, transitions, start, end, mask)), atol=1e-5)
    assert np.allclose(_np(crf_marginals(padded_e, transitions, start, end, padded_mask))[:, real],
                       _np(crf_marginals(e, transitions, start, end, mask)), atol=1e-6)
    assert np.array_equal(viterbi_decode(padded_e, transitions, start, end, padded_mask)[:, real],
                          viterbi_decode(e, transitions, start, end, mask))
    padded_logp = _np(crf_conditional_log_probs(padded_e, padded_labels, transitions, start, end, padded_mask))
    assert np.allclose(padded_logp[:, real], _np(crf_conditional_log_probs(e, labels, transitions, start, end, mask)),
                       atol=1e-5)
    weights = [1.0, 3.0, 0.5]
    assert float(crf_weighted_nll(padded_e, padded_labels, transitions, start, end, padded_mask, weights)) == \
        pytest.approx(float(crf_weighted_nll(e, labels, transitions, start, end, mask, weights)), rel=1e-5)


def test_weighted_nll_is_the_nll_per_position_with_unit_weights_and_weights_each_position_by_its_class():
    e, transitions, start, end, mask, labels = _problem(3)
    log_z = _np(crf_log_partition(e, transitions, start, end, mask))
    nll = 0.0
    for b in range(len(e)):
        steps = np.flatnonzero(mask[b])
        if len(steps):
            nll += log_z[b] - _path_score(e[b], labels[b][steps], steps, transitions, start, end)
    unit = float(crf_weighted_nll(e, labels, transitions, start, end, mask, [1.0] * K))
    assert unit == pytest.approx(nll / mask.sum(), rel=1e-5)
    weights = np.array([0.5, 2.0, 4.0])
    logp = _np(crf_conditional_log_probs(e, labels, transitions, start, end, mask))
    weighted = float(crf_weighted_nll(e, labels, transitions, start, end, mask, weights))
    assert weighted == pytest.approx(-(weights[labels] * logp * mask).sum() / mask.sum(), rel=1e-5)


def test_layer_config_round_trips_and_the_network_json_rebuild_predicts_the_same():
    layer = CRF(name="crf")
    assert CRF.from_config(layer.get_config()).get_config() == layer.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(again, CRF) and again.name == "crf"
    net = build_network(6, 5, K, hidden_size=4, num_layers=1, dropout=0.0, seed=2, output_layer="crf")
    crf = net.get_layer("crf")
    rng = np.random.default_rng(0)
    for variable in (crf.transitions, crf.start, crf.end):  # trained-looking, not the zero init
        variable.assign(rng.normal(size=variable.shape))
    x = rng.normal(size=(3, 6, 5)).astype(np.float32)
    mask = np.ones((3, 6), bool)
    mask[1, 4:] = False
    rebuilt = model_from_json(net.to_json(), compile=False)
    rebuilt.set_weights(net.get_weights())
    expected = _np(net([x, mask], training=False))
    assert np.allclose(_np(rebuilt([x, mask], training=False)), expected, atol=1e-6)
    assert np.allclose(expected.sum(axis=-1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match='Expected output_layer "softmax" or "crf". Received'):
        build_network(6, 5, K, output_layer="hmm")


def test_trainer_shares_the_network_and_its_loss_falls():
    net = build_network(5, 4, K, hidden_size=4, num_layers=1, dropout=0.0, seed=1, output_layer="crf")
    trainer = CRFTrainer(net, [1.0, 2.0, 1.0])
    trainer.compile(optimizer=keras.optimizers.Adam(0.05))
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, size=(16, 5)).astype(np.int32)
    x = np.eye(4, dtype=np.float32)[np.minimum(y, 3)] + 0.1 * rng.normal(size=(16, 5, 4)).astype(np.float32)
    mask = np.ones((16, 5), bool)
    mask[::3, 3:] = False
    history = trainer.fit({"features": x, "mask": mask}, y, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert {id(v) for v in trainer.trainable_variables} == {id(v) for v in net.trainable_variables}
    accuracy = (_np(net([x, mask])).argmax(-1) == y)[mask].mean()
    assert accuracy > 0.9


# --- BiLSTMClassifier(outputLayer="crf") with Spark -------------------------------------------


@pytest.fixture(scope="module")
def crf_fitted(train_df, tiny_params):
    return BiLSTMClassifier(outputLayer="crf", validationFraction=0.2, **tiny_params).fit(train_df)


def _macro_f1(model, df):
    from skol_spark.core.thresholds import macro_f1

    rows = model.transform(df).select("label", "prediction").collect()
    return macro_f1(np.array([int(r.label) for r in rows]), np.array([int(r.prediction) for r in rows]), 3)[0]


def test_fit_with_a_crf_output_learns_and_transforms(crf_fitted, test_df):
    assert crf_fitted.getOutputLayer() == "crf"
    history = crf_fitted.history
    assert history["loss"][-1] < history["loss"][0]
    assert "val_macro_f1" in history and "val_loss" in history
    network = crf_fitted.getKerasModel()
    assert isinstance(network.get_layer("crf"), CRF)
    out = crf_fitted.transform(test_df).select("probability", "prediction").collect()
    probs = np.array([r.probability.toArray() for r in out])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=1), [int(r.prediction) for r in out])
    # Majority-class labelling scores about 0.29 macro-F1 here (the softmax test asks for 0.5 too).
    assert _macro_f1(crf_fitted, test_df) > 0.5


def test_crf_model_round_trips_on_disk_in_redis_and_as_keras(crf_fitted, test_df, tmp_path, redis_url):
    expected = predictions(crf_fitted, test_df)
    path = str(tmp_path / "model")
    crf_fitted.save(path)
    loaded = BiLSTMClassificationModel.load(path)
    assert loaded.getOutputLayer() == "crf"
    assert_same_predictions(predictions(loaded, test_df), expected)

    crf_fitted.saveToRedis(redis_url, "skol:crf")
    assert_same_predictions(predictions(BiLSTMClassificationModel.loadFromRedis(redis_url, "skol:crf"), test_df),
                            expected)

    keras_path = str(tmp_path / "net.keras")
    crf_fitted.saveKeras(keras_path)
    compiled = keras.models.load_model(keras_path)  # compiled: cross-entropy on the marginals
    assert compiled.loss.get_config()["class_weights"] == pytest.approx(crf_fitted.getClassWeightsUsed())
    wrapped = BiLSTMClassificationModel.fromKeras(keras_path, labels=crf_fitted.labels_)
    assert wrapped.getOutputLayer() == "crf"
    assert_same_predictions(predictions(wrapped, test_df), expected)


def test_crf_classifier_in_a_pipeline_round_trips(train_df, test_df, tiny_params, tmp_path):
    pipeline = Pipeline(stages=[BiLSTMClassifier(outputLayer="crf", **dict(tiny_params, epochs=1))])
    path = str(tmp_path / "pipeline")
    pipeline.save(path)
    assert Pipeline.load(path).getStages()[0].getOutputLayer() == "crf"
    fitted = pipeline.fit(train_df)
    fitted.save(str(tmp_path / "fitted"))
    loaded = PipelineModel.load(str(tmp_path / "fitted"))
    assert loaded.stages[0].getOutputLayer() == "crf"
    assert_same_predictions(predictions(loaded, test_df), predictions(fitted, test_df))


def test_output_layer_param_errors(crf_fitted, train_df, tiny_params):
    with pytest.raises(ValueError, match="Expected outputLayer to be one of 'softmax', 'crf'. Received"):
        BiLSTMClassifier(outputLayer="hmm")
    with pytest.raises(ValueError, match="initialModel has outputLayer='crf'.*outputLayer='softmax'"):
        BiLSTMClassifier(initialModel=crf_fitted, **tiny_params).fit(train_df)


# --- JAX --------------------------------------------------------------------------------------

JAX_SIDE = r"""
import json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from skol_spark.nn.crf import CRFTrainer, crf_weighted_nll, emission_model
from skol_spark.nn.network import model_from_json
from skol_spark.nn.trained_network import weights_from_bytes

inputs = np.load(sys.argv[1])
net = model_from_json(open(sys.argv[2]).read())
net.set_weights(weights_from_bytes(open(sys.argv[3], "rb").read()))
x, mask, y = inputs["x"], inputs["mask"], inputs["y"]
probs = keras.ops.convert_to_numpy(net([x, mask], training=False))
crf = net.get_layer("crf")
emissions = emission_model(net)([x, mask])
loss = float(crf_weighted_nll(emissions, y, crf.transitions, crf.start, crf.end, mask, [1.0, 3.0, 2.0]))
trainer = CRFTrainer(net, [1.0, 3.0, 2.0])
trainer.compile(optimizer="adam")
history = trainer.fit({"features": x, "mask": mask}, y, epochs=3, verbose=0).history["loss"]
np.savez(sys.argv[4], probs=probs, loss=loss, history=np.array(history))
"""


def test_crf_network_and_loss_match_tensorflow_on_jax(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install -e '.[test]')")
    rng = np.random.default_rng(4)
    net = build_network(6, 5, K, hidden_size=4, num_layers=1, dropout=0.0, seed=2, output_layer="crf")
    crf = net.get_layer("crf")
    for variable in (crf.transitions, crf.start, crf.end):
        variable.assign(rng.normal(size=variable.shape))
    x = rng.normal(size=(4, 6, 5)).astype(np.float32)
    mask = np.ones((4, 6), bool)
    mask[1, 3:] = False
    mask[2, 1] = False
    y = rng.integers(0, K, size=(4, 6)).astype(np.int32)
    probs = _np(net([x, mask], training=False))
    emissions = emission_model(net)([x, mask])
    loss = float(crf_weighted_nll(emissions, y, crf.transitions, crf.start, crf.end, mask, [1.0, 3.0, 2.0]))
    np.savez(tmp_path / "inputs.npz", x=x, mask=mask, y=y)
    (tmp_path / "model.json").write_text(net.to_json())
    (tmp_path / "weights.npz").write_bytes(weights_to_bytes(net.get_weights()))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-c", JAX_SIDE, str(tmp_path / "inputs.npz"), str(tmp_path / "model.json"),
         str(tmp_path / "weights.npz"), str(tmp_path / "out.npz")],
        env=env, check=True, capture_output=True, timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    assert np.allclose(out["probs"], probs, atol=1e-5)
    assert float(out["loss"]) == pytest.approx(loss, rel=1e-4)
    assert np.all(np.isfinite(out["history"])) and out["history"][-1] < out["history"][0]
