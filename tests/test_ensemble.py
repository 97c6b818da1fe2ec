"""ensembleSize: several BiLSTMs trained one after the other and averaged into one network."""

import keras
import numpy as np
import pytest

from skol_spark.core.windows import predict_block
from skol_spark.nn.network import (
    FeatureSlice,
    build_network,
    ensemble_members,
    ensemble_size_of,
    model_from_json,
    set_ensemble_weights,
)
from skol_spark.nn.projection import make_forward, split_network

W, D, K, E, M = 6, 40, 3, 5, 3


def _probe(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, W, D)).astype("float32")
    mask = np.ones((4, W), dtype=bool)
    mask[1, 4:] = False
    return x, mask


def _numpy(model, x, mask):
    return keras.ops.convert_to_numpy(model([x, mask], training=False))


def _ensemble(seed=0):
    return build_network(W, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=seed, embedding_size=E,
                         ensemble_size=M)


def test_an_ensemble_is_the_mean_of_its_members_and_splits_like_one_network():
    network = _ensemble()
    x, mask = _probe()
    members = ensemble_members(network)
    assert ensemble_size_of(network) == M and len(members) == M
    assert all(ensemble_size_of(m) == 1 and split_network(m)[0].units == E for m in members)
    np.testing.assert_allclose(
        _numpy(network, x, mask), np.mean([_numpy(m, x, mask) for m in members], axis=0), atol=1e-6
    )
    # Members start apart (their own initial weights), and the projection holds each member's columns.
    assert not np.allclose(_numpy(members[0], x, mask), _numpy(members[1], x, mask))
    projection, sequence = split_network(network)
    assert projection.units == M * E and len(sequence.inputs) == 2


def test_weights_go_from_members_back_into_the_ensemble():
    network = _ensemble()
    x, mask = _probe(1)
    members = ensemble_members(network)
    for i, member in enumerate(members):  # as if each had been trained
        member.set_weights([w + 0.05 * (i + 1) for w in member.get_weights()])
    set_ensemble_weights(network, members)
    np.testing.assert_allclose(
        _numpy(network, x, mask), np.mean([_numpy(m, x, mask) for m in members], axis=0), atol=1e-6
    )
    with pytest.raises(ValueError, match="Expected 3 member networks. Received: 2"):
        set_ensemble_weights(network, members[:2])


def test_an_ensemble_rebuilds_from_its_json_and_runs_on_the_executors_path():
    network = _ensemble(seed=4)
    x, mask = _probe(2)
    rebuilt = model_from_json(network.to_json(), compile=False)
    rebuilt.set_weights(network.get_weights())
    np.testing.assert_allclose(_numpy(rebuilt, x, mask), _numpy(network, x, mask), atol=1e-6)
    rows = x.reshape(-1, D)
    lengths = np.array([W, W, W, W])
    whole = lambda a, b: _numpy(network, a, b)  # noqa: E731
    forward = make_forward(rebuilt)  # as executors run it: rows projected once, then the sequence model
    np.testing.assert_allclose(
        predict_block(forward, forward.projection(rows), lengths, W, W, 2, K),
        predict_block(whole, rows, lengths, W, W, 2, K),
        rtol=1e-5, atol=1e-6,
    )


def test_feature_slice_round_trips_its_config_and_refuses_an_empty_range():
    layer = FeatureSlice(2, 5, name="slice")
    again = FeatureSlice.from_config(layer.get_config())
    assert (again.start, again.stop) == (2, 5)
    assert keras.ops.convert_to_numpy(again(np.arange(8.0).reshape(1, 8))).tolist() == [[2.0, 3.0, 4.0]]
    with pytest.raises(ValueError, match="Expected 0 <= start < stop. Received: start=3, stop=3"):
        FeatureSlice(3, 3)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(output_layer="crf", embedding_size=E), 'Expected output_layer="softmax" and embedding_size > 0'),
        (dict(embedding_size=0), 'Expected output_layer="softmax" and embedding_size > 0'),
    ],
)
def test_build_network_refuses_ensembles_it_cannot_average(options, message):
    with pytest.raises(ValueError, match=message):
        build_network(W, D, K, hidden_size=4, num_layers=1, ensemble_size=2, **options)
    with pytest.raises(ValueError, match="Expected ensemble_size >= 1. Received: ensemble_size=0"):
        build_network(W, D, K, ensemble_size=0)


# -- training ----------------------------------------------------------------------------------


def _training_data(sparse: bool):
    from conftest import sparse_rows

    from skol_spark.fit.training_data import FeatureRows, TrainingData

    lengths = np.array([9, 14, 7, 12])
    dense, csr = sparse_rows(int(lengths.sum()), D, 0.15, seed=4)
    labels = np.random.default_rng(4).integers(0, K, len(dense))
    rows = FeatureRows(np.arange(len(dense)), D, csr=csr) if sparse else FeatureRows.from_dense(dense)
    return TrainingData(rows, labels, lengths)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_members_trained_in_turn_on_one_compiled_model_equal_members_trained_alone(sparse):
    """train_network reuses one compiled single network for every member; each member's weights
    are bit for bit what training it as a network of its own gives (weights, dropout masks, batch
    order, a fresh optimizer), also with validation and early stopping."""
    from skol_spark.fit.progress import FitProgress
    from skol_spark.fit.training import TrainingConfig, _MemberTrainer, new_network, split_validation, train_network

    data = _training_data(sparse)
    config = TrainingConfig(window_size=W, num_classes=K, class_weights=[1.0, 2.0, 0.5], hidden_size=4,
                            embedding_size=E, num_layers=1, dropout=0.3, output_layer="softmax", epochs=3,
                            batch_size=2, learning_rate=0.05, seed=3, validation_fraction=0.3,
                            early_stopping_patience=1, predict_batch_size=8, ensemble_size=M)
    network, history = train_network(data, config)
    split = split_validation(data.doc_lengths, config.validation_fraction, config.seed, config.window_size)
    m = M - 1  # the last member: it starts after the others trained on the same compiled model
    alone = ensemble_members(new_network(config, D))[m]  # member m's own initial weights and seeds
    _MemberTrainer(alone, data, split, config).fit(FitProgress(False, config.epochs), m, seed=config.seed + m)
    for got, expected in zip(ensemble_members(network)[m].get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(got, expected)
    assert len(history["best_epoch"]) == M


# -- the estimator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ensemble_fit(spark, train_df, tiny_params):
    from skol_spark import BiLSTMClassifier

    params = {**tiny_params, "embeddingSize": 4, "epochs": 2}
    single = BiLSTMClassifier(validationFraction=0.2, **params).fit(train_df)
    ensemble = BiLSTMClassifier(validationFraction=0.2, **{**params, "ensembleSize": M}).fit(train_df)
    return single, ensemble


def test_fit_trains_every_member_and_records_their_histories(ensemble_fit, tiny_params):
    single, ensemble = ensemble_fit
    network = ensemble.getKerasModel()
    assert ensemble.getEnsembleSize() == M and ensemble_size_of(network) == M
    history = ensemble.history
    assert len(history["loss"]) == 2 and len(history[f"member_{M - 1}/loss"]) == 2
    assert 0.0 <= history["ensemble_val_macro_f1"][0] <= 1.0
    # Member 0 trains with the estimator's seed, the others with seed + m: no two members are alike.
    members = ensemble_members(network)
    x = np.random.default_rng(0).normal(size=(2, tiny_params["windowSize"], 8)).astype("float32")
    mask = np.ones(x.shape[:2], dtype=bool)
    outputs = [_numpy(m, x, mask) for m in members]
    assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[2])
    assert ensemble_size_of(single.getKerasModel()) == 1 and "ensemble_val_macro_f1" not in single.history


def test_an_ensemble_model_round_trips_through_every_store(spark, ensemble_fit, test_df, tmp_path, redis_url):
    from conftest import assert_same_predictions, predictions
    from pyspark.ml import PipelineModel

    from skol_spark import BiLSTMClassificationModel

    _, ensemble = ensemble_fit
    expected = predictions(ensemble, test_df)
    ensemble.save(str(tmp_path / "dir"))
    loaded = BiLSTMClassificationModel.load(str(tmp_path / "dir"))
    assert loaded.getEnsembleSize() == M
    assert_same_predictions(predictions(loaded, test_df), expected)
    PipelineModel(stages=[ensemble]).save(str(tmp_path / "pipeline"))
    assert_same_predictions(predictions(PipelineModel.load(str(tmp_path / "pipeline")), test_df), expected)
    ensemble.saveToRedis(redis_url, "skol:ensemble")
    assert_same_predictions(predictions(BiLSTMClassificationModel.loadFromRedis(redis_url, "skol:ensemble"), test_df), expected)
    ensemble.saveKeras(str(tmp_path / "net.keras"))
    wrapped = BiLSTMClassificationModel.fromKeras(str(tmp_path / "net.keras"), labels=ensemble.labels_)
    assert (wrapped.getEnsembleSize(), wrapped.getEmbeddingSize()) == (M, 4)
    assert_same_predictions(predictions(wrapped, test_df), expected)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(ensembleSize=2, outputLayer="crf"), "Expected outputLayer='softmax' and embeddingSize > 0 with ensembleSize > 1"),
        (dict(ensembleSize=2, embeddingSize=0), "Expected outputLayer='softmax' and embeddingSize > 0 with ensembleSize > 1"),
    ],
)
def test_fit_refuses_ensembles_it_cannot_train(train_df, tiny_params, params, message):
    from skol_spark import BiLSTMClassifier

    with pytest.raises(ValueError, match=message):
        BiLSTMClassifier(**{**tiny_params, **params}).fit(train_df)


def test_ensemble_size_must_be_positive():
    from skol_spark import BiLSTMClassifier

    with pytest.raises(ValueError, match="ensembleSize"):
        BiLSTMClassifier(ensembleSize=0)


def test_the_default_ensemble_trains_data_parallel_too():
    from skol_spark import BiLSTMClassifier

    estimator = BiLSTMClassifier(numWorkers=2)
    assert not estimator.isSet(estimator.ensembleSize)
    assert estimator.effectiveEnsembleSize() == estimator.getEnsembleSize() > 1
    estimator._validate_params(fitting=True)
    assert BiLSTMClassifier(numWorkers=2, ensembleSize=2).effectiveEnsembleSize() == 2


@pytest.mark.parametrize("params", [dict(outputLayer="crf"), dict(embeddingSize=0)], ids=["crf", "no-projection"])
def test_the_default_ensemble_is_one_network_where_an_ensemble_cannot_be(params):
    from skol_spark import BiLSTMClassifier

    default = BiLSTMClassifier()
    assert not default.isSet(default.ensembleSize) and default.effectiveEnsembleSize() == default.getEnsembleSize() > 1
    estimator = BiLSTMClassifier(**params)
    assert estimator.getEnsembleSize() > 1 and estimator.effectiveEnsembleSize() == 1
    estimator._validate_params(fitting=True)  # what fit checks first: nothing left to refuse
