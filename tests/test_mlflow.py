"""MLflow: what fit logs to the active run, and the README's mlflow.spark recipe.

A real MLflow with a sqlite tracking store and artifacts in a temp dir.
"""

import logging
import os

import numpy as np
import pytest

if os.environ.get("CI"):
    import mlflow  # the test extra has it: in CI a missing mlflow is a broken install, not a skip
else:
    mlflow = pytest.importorskip(
        "mlflow", reason="mlflow is not installed: pip install 'skol_spark[mlflow]' to run the MLflow tests"
    )

from mlflow.tracking import MlflowClient  # noqa: E402

from skol_spark import BiLSTMClassifier  # noqa: E402


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A sqlite tracking store and an experiment whose artifacts stay in a temp dir."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    experiment = mlflow.create_experiment("skol_spark-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    yield MlflowClient(), experiment
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def logged(tracking, train_df, tiny_params):
    """One fit with early stopping inside a run: (run id, estimator, model)."""
    estimator = BiLSTMClassifier(validationFraction=0.25, earlyStoppingPatience=1, **tiny_params)
    with mlflow.start_run() as run:
        model = estimator.fit(train_df)
    return run.info.run_id, estimator, model


def test_fit_logs_params_epoch_metrics_best_epoch_and_class_weights(tracking, logged, tiny_params):
    client, _ = tracking
    run_id, estimator, model = logged
    data = client.get_run(run_id).data
    # The estimator's Params (set or with a default), none of the network's.
    assert set(data.params) == {p.name for p in estimator.extractParamMap()}
    assert not {"modelJson", "modelWeights", "trainingHistory"} & set(data.params)
    assert data.params["windowSize"] == str(tiny_params["windowSize"])
    assert data.params["validationFraction"] == "0.25" and data.params["weightStrategy"] == "balanced"
    history = model.history
    for name in ("loss", "val_loss", "val_macro_f1", "val_accuracy"):
        logged_metric = client.get_metric_history(run_id, name)
        assert [m.step for m in logged_metric] == list(range(1, len(history[name]) + 1))
        assert np.allclose([m.value for m in logged_metric], history[name])
    assert data.metrics["best_epoch"] == history["best_epoch"][0]
    weights = mlflow.artifacts.load_dict(f"{client.get_run(run_id).info.artifact_uri}/class_weights.json")
    assert weights == dict(zip(model.labels_, model.getClassWeightsUsed()))


def test_mlflow_spark_round_trip_with_signature_predicts_the_same(tracking, logged, test_df):
    from mlflow.models import infer_signature

    model = logged[2]
    out = model.transform(test_df)
    signature = infer_signature(test_df.limit(5), out.limit(5))
    assert "features" in signature.inputs.input_names() and "probability" in signature.outputs.input_names()
    with mlflow.start_run():
        # Requirements given, so MLflow does not load the model in a subprocess to infer them.
        info = mlflow.spark.log_model(model, "bilstm", signature=signature, pip_requirements=["skol_spark"])
    loaded = mlflow.spark.load_model(info.model_uri)
    assert mlflow.models.get_model_info(info.model_uri).signature == signature

    def probabilities(frame):
        return {(r.doc_id, r.line_number): r.probability.toArray() for r in frame.collect()}

    before, after = probabilities(out), probabilities(loaded.transform(test_df))
    assert before.keys() == after.keys() and len(before) == test_df.count()
    assert all(np.allclose(before[k], after[k]) for k in before)


def test_mlflow_logging_off_or_no_active_run_logs_nothing(tracking, train_df, tiny_params):
    client, experiment = tracking
    params = dict(tiny_params, epochs=1)
    runs_before = len(client.search_runs([experiment]))
    BiLSTMClassifier(**params).fit(train_df)  # no active run: none is started
    assert len(client.search_runs([experiment])) == runs_before
    with mlflow.start_run() as run:
        BiLSTMClassifier(mlflowLogging=False, **params).fit(train_df)
    data = client.get_run(run.info.run_id).data
    assert data.params == {} and data.metrics == {}
    assert client.list_artifacts(run.info.run_id) == []
    assert BiLSTMClassifier().setMlflowLogging(False).getMlflowLogging() is False


def test_a_logging_failure_warns_and_the_fit_goes_on(tracking, train_df, tiny_params, caplog):
    params = dict(tiny_params, epochs=1)
    with mlflow.start_run(), caplog.at_level(logging.WARNING, logger="skol_spark"):
        # MLflow refuses to change a logged param, so logging this fit's windowSize fails.
        mlflow.log_param("windowSize", "999")
        model = BiLSTMClassifier(**params).fit(train_df)
    assert model.history["loss"]
    warnings = [r.getMessage() for r in caplog.records if "MLflow logging stopped" in r.getMessage()]
    assert len(warnings) == 1 and "the params" in warnings[0] and "mlflowLogging=False" in warnings[0]
